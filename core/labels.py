"""The emotion label set: one place, one order (MELD's seven classes)."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
NUM_EMOTIONS = len(EMOTIONS)
EMOTION_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

MODALITIES: tuple[str, ...] = ("audio", "visual", "text")


def emotion_index(label: str) -> int:
    """Index of a MELD emotion label; raises a ValueError naming the valid labels."""
    try:
        return EMOTION_INDEX[label.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown emotion label {label!r}; expected one of {', '.join(EMOTIONS)}") from None
