"""Checkpoints: `model.safetensors` (weights) + `config.json` (config, labels, feature versions).

Loading never unpickles anything: weights come from safetensors, everything else is JSON. The JSON
records the SHA-256 of the weights file, so a tampered or truncated file is refused with a clear
`CheckpointError` before any tensor is used.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core import __version__
from core.features.cache import file_sha256
from core.model import MLSAN, MLSANConfig

FORMAT = "mlsan-live-checkpoint/1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says what is wrong and what to do."""


@dataclass
class Checkpoint:
    model: MLSAN
    directory: Path  # where it was loaded from (files it names, e.g. a text adapter, live here)
    feature_versions: dict[str, str] = field(default_factory=dict)  # extractor name -> version
    extra: dict = field(default_factory=dict)  # free-form metadata (training data, metrics, ...)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(directory: str | Path, model: MLSAN, feature_versions: dict[str, str] | None = None,
                    extra: dict | None = None) -> Path:
    """Write `directory/model.safetensors` and `directory/config.json` atomically."""
    directory = Path(directory)
    weights = directory / WEIGHTS_NAME
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    meta = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "labels": list(model.cfg.labels),
        "feature_versions": dict(feature_versions or {}),
        "weights_sha256": file_sha256(weights),
        "versions": {"mlsan_live": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "extra": extra or {},
    }
    _atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return directory


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept the checkpoint directory, its config.json or its model.safetensors."""
    p = Path(path).expanduser()
    if p.is_file() and p.name in (WEIGHTS_NAME, CONFIG_NAME):
        p = p.parent
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p} (pass a directory holding {CONFIG_NAME} and {WEIGHTS_NAME})")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {p} is not a directory with {CONFIG_NAME} and {WEIGHTS_NAME}")
    return p


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint; raise CheckpointError with a one-line reason on any problem."""
    d = resolve_checkpoint_dir(path)
    cfg_path, weights = d / CONFIG_NAME, d / WEIGHTS_NAME
    for f in (cfg_path, weights):
        if not f.is_file():
            raise CheckpointError(f"checkpoint {d} is incomplete: {f.name} is missing")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint config {cfg_path} is not valid JSON ({e}); re-download or retrain it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} is not an mlsan-live checkpoint config (expected format {FORMAT!r})")
    try:
        cfg = MLSANConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint config {cfg_path} is invalid: {e}") from None
    if list(cfg.labels) != list(meta.get("labels", [])):
        raise CheckpointError(f"checkpoint config {cfg_path}: label list does not match the model config")
    expected = meta.get("weights_sha256")
    if expected is not None and file_sha256(weights) != expected:
        raise CheckpointError(f"checkpoint weights {weights} do not match the checksum in {CONFIG_NAME}: "
                              "the file is corrupt or was modified; re-download or retrain it")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint weights {weights} cannot be read as safetensors ({e})") from None
    model = MLSAN(cfg)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {d} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape) or state[k].dtype != v.dtype:
            raise CheckpointError(f"checkpoint {d}: tensor {k} has shape {tuple(state[k].shape)} {state[k].dtype}, "
                                  f"the config implies {tuple(v.shape)} {v.dtype}")
    model.load_state_dict(state, strict=True)
    model.eval()
    return Checkpoint(model.to(device), d, dict(meta.get("feature_versions", {})), dict(meta.get("extra", {})))
