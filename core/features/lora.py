"""LoRA adapters for the text encoder: small trainable low-rank updates on frozen linear layers.

Saved as safetensors (a few hundred kB for MiniLM at rank 8), so a fine-tuned text encoder can ship
inside a checkpoint directory while the base model comes from its offline package."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

# BERT-style layer names that get adapters: attention projections and the feed-forward layers.
TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) * x A^T B^T, with `base` frozen and B zero-initialised."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


def inject(model: nn.Module, r: int = 8, alpha: float = 16.0) -> list[nn.Parameter]:
    """Wrap every targeted nn.Linear of `model` in place; freeze everything else; return the new params."""
    model.requires_grad_(False)
    params: list[nn.Parameter] = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and any(full.endswith(t) for t in TARGETS):
                wrapped = LoRALinear(child, r, alpha)
                setattr(module, child_name, wrapped)
                params += [wrapped.lora_a, wrapped.lora_b]
    if not params:
        raise ValueError("no layer of the text encoder matched the LoRA targets; is it a BERT-style model?")
    return params


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if ".lora_" in k}


def save_adapter(model: nn.Module, path: str | Path, r: int, alpha: float) -> None:
    save_file(adapter_state(model), str(path), metadata={"r": str(r), "alpha": str(alpha)})


def load_adapter(model: nn.Module, path: str | Path) -> None:
    """Inject adapters with the saved rank and load their weights (safetensors: no pickle)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        r, alpha = int(meta["r"]), float(meta["alpha"])
    except (KeyError, ValueError):
        raise ValueError(f"{path} is not a LoRA adapter file (no rank/alpha metadata)") from None
    inject(model, r, alpha)
    state = load_file(str(path))
    own = adapter_state(model)
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise ValueError(f"LoRA adapter {path} does not fit this text encoder")
    model.load_state_dict(state, strict=False)
