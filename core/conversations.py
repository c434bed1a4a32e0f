"""Conversations as arrays, and their collation into padded `TurnBatch`es.

One record type for every corpus: a MELD dialogue (text only), a RAVDESS sequence of one actor's
clips (audio, voiceprint), or a live conversation replayed for evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.model import MLSANConfig, TurnBatch


@dataclass
class Conversation:
    speaker: np.ndarray  # (T,) int: speaker index local to the conversation, 0, 1, ... in order of appearance
    labels: np.ndarray  # (T,) int emotion index, -100 = unlabelled
    audio: np.ndarray | None = None  # (T, Da) float32, or None: no audio in this conversation
    visual: np.ndarray | None = None  # (T, Dv)
    text: np.ndarray | None = None  # (T, Dt)
    present: np.ndarray | None = None  # (T, 3) bool; default: modality present iff its array exists
    voiceprint: np.ndarray | None = None  # (T, Dvp)
    in_context: np.ndarray | None = None  # (T,) bool; default: all True
    scored: np.ndarray | None = None  # (T,) bool: turns that count in evaluation; default: all
    speaker_key: np.ndarray | None = None  # (T,) int global speaker id (e.g. MELD name, RAVDESS actor), -1 unknown
    ids: tuple = ()  # free-form identifiers of the turns (for error analysis)

    def __len__(self) -> int:
        return len(self.speaker)

    def presence(self) -> np.ndarray:
        if self.present is not None:
            return self.present.astype(bool)
        T = len(self)
        return np.stack([np.full(T, x is not None) for x in (self.audio, self.visual, self.text)], 1)


def local_speakers(names: list) -> np.ndarray:
    """Map speaker names to 0, 1, ... in order of first appearance."""
    seen: dict = {}
    return np.array([seen.setdefault(n, len(seen)) for n in names], dtype=np.int64)


def collate(convs: list[Conversation], cfg: MLSANConfig) -> TurnBatch:
    """Pad a list of conversations into one batch (labels of unscored turns set to -100)."""
    B, T = len(convs), max(len(c) for c in convs)
    dims = {"audio": cfg.audio_dim, "visual": cfg.visual_dim, "text": cfg.text_dim, "voiceprint": cfg.voiceprint_dim}
    arr = {k: np.zeros((B, T, d), np.float32) for k, d in dims.items()}
    present = np.zeros((B, T, 3), bool)
    speaker = np.zeros((B, T), np.int64)
    valid = np.zeros((B, T), bool)
    has_vp = np.zeros((B, T), bool)
    in_ctx = np.zeros((B, T), bool)
    labels = np.full((B, T), -100, np.int64)
    key = np.full((B, T), -1, np.int64)
    for i, c in enumerate(convs):
        n = len(c)
        for k in dims:
            x = getattr(c, k)
            if x is not None:
                if x.shape[1] != dims[k]:
                    raise ValueError(f"{k} features have {x.shape[1]} dimensions; the model expects {dims[k]}")
                arr[k][i, :n] = x
        present[i, :n] = c.presence()
        speaker[i, :n] = c.speaker
        valid[i, :n] = True
        has_vp[i, :n] = c.voiceprint is not None
        in_ctx[i, :n] = True if c.in_context is None else c.in_context
        lab = np.asarray(c.labels)
        labels[i, :n] = lab if c.scored is None else np.where(c.scored, lab, -100)
        if c.speaker_key is not None:
            key[i, :n] = c.speaker_key
    t = torch.from_numpy
    return TurnBatch(audio=t(arr["audio"]), visual=t(arr["visual"]), text=t(arr["text"]), present=t(present),
                     speaker=t(speaker), valid=t(valid), voiceprint=t(arr["voiceprint"]), has_voiceprint=t(has_vp),
                     in_context=t(in_ctx), labels=t(labels), speaker_key=t(key))
