"""Helpers for model tests: small configs, random conversations, per-turn replay through `step`."""

from __future__ import annotations

import torch

from core.model import MLSAN, MLSANConfig, ModelOutput, TurnBatch, TurnFeatures

SMALL = dict(audio_dim=10, visual_dim=6, text_dim=12, voiceprint_dim=8, d_model=32, d_speaker=16, n_heads=4)


def small_model(seed: int = 0, perturb: float = 0.05, **overrides) -> MLSAN:
    """A small model whose zero-initialised parts (FiLM, fallbacks) are randomised, so tests
    exercise every path instead of an identity."""
    torch.manual_seed(seed)
    m = MLSAN(MLSANConfig(**{**SMALL, **overrides}))
    with torch.no_grad():
        for p in m.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, perturb)
    return m.eval()


def random_batch(cfg: MLSANConfig, B: int = 3, T: int = 11, seed: int = 1, p_present: float = 0.7) -> TurnBatch:
    g = torch.Generator().manual_seed(seed)
    b = TurnBatch(
        audio=torch.randn(B, T, cfg.audio_dim, generator=g),
        visual=torch.randn(B, T, cfg.visual_dim, generator=g),
        text=torch.randn(B, T, cfg.text_dim, generator=g),
        present=torch.rand(B, T, 3, generator=g) < p_present,
        speaker=torch.randint(0, 3, (B, T), generator=g),
        valid=torch.ones(B, T, dtype=torch.bool),
        voiceprint=torch.randn(B, T, cfg.voiceprint_dim, generator=g),
        has_voiceprint=torch.rand(B, T, generator=g) < 0.5,
        in_context=torch.rand(B, T, generator=g) < 0.85,
        labels=torch.randint(0, len(cfg.labels), (B, T), generator=g),
    )
    if B > 1:
        b.valid[-1, T // 2:] = False  # a shorter, right-padded conversation
    return b


def turn_of(b: TurnBatch, i: int, t: int) -> TurnFeatures:
    pr = b.present[i, t]
    return TurnFeatures(
        speaker=int(b.speaker[i, t]),
        audio=b.audio[i, t] if pr[0] else None,
        visual=b.visual[i, t] if pr[1] else None,
        text=b.text[i, t] if pr[2] else None,
        voiceprint=b.voiceprint[i, t] if b.has_voiceprint is not None and b.has_voiceprint[i, t] else None,
        in_context=bool(b.in_context[i, t]) if b.in_context is not None else True,
    )


def replay(model: MLSAN, b: TurnBatch, i: int) -> list[ModelOutput]:
    """Run conversation i of the batch through `step`, one turn at a time."""
    state, outs = model.init_state(), []
    for t in range(b.speaker.shape[1]):
        if b.valid[i, t]:
            out, state = model.step(turn_of(b, i, t), state)
            outs.append(out)
    return outs
