"""RAVDESS emotional speech: `Actor_XX/03-01-EE-II-SS-RR-AA.(flac|wav)` -> clips with MELD labels.

File name fields: modality (03 audio-only) - vocal channel (01 speech) - emotion - intensity
(01 normal, 02 strong) - statement (01 "Kids...", 02 "Dogs...") - repetition - actor (odd male,
even female). Song files (channel 02) and anything else not matching are skipped.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.data.paths import SOURCES, require_root
from core.labels import emotion_index

FILE_RE = re.compile(r"^03-01-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.(?:flac|wav)$", re.IGNORECASE)
ACTOR_DIR_RE = re.compile(r"^Actor_(\d{2})$")
NUM_ACTORS = 24  # the full corpus has actors 01-24

# RAVDESS emotion code -> (RAVDESS name, MELD label in core.labels.EMOTIONS).
EMOTION_CODES: dict[int, tuple[str, str]] = {
    1: ("neutral", "neutral"),
    2: ("calm", "neutral"),
    3: ("happy", "joy"),
    4: ("sad", "sadness"),
    5: ("angry", "anger"),
    6: ("fearful", "fear"),
    7: ("disgust", "disgust"),
    8: ("surprised", "surprise"),
}


@dataclass(frozen=True)
class Clip:
    path: Path  # the audio file
    actor: int  # 1-24; odd = male, even = female
    emotion: str  # MELD label (core.labels.EMOTIONS); calm -> neutral
    raw_emotion: str  # RAVDESS emotion name (neutral, calm, happy, ...)
    intensity: int  # 1 normal, 2 strong
    statement: int  # 1 "Kids are talking by the door", 2 "Dogs are sitting by the door"
    repetition: int  # 1 or 2

    @property
    def label(self) -> int:
        """Index of `emotion` in core.labels.EMOTIONS."""
        return emotion_index(self.emotion)

    @property
    def male(self) -> bool:
        return self.actor % 2 == 1


def _clip(path: Path, folder_actor: int) -> Clip | None:
    m = FILE_RE.match(path.name)
    if m is None:
        return None
    emo, intensity, statement, repetition, actor = (int(g) for g in m.groups())
    if emo not in EMOTION_CODES or intensity not in (1, 2) or statement not in (1, 2) or repetition not in (1, 2):
        raise ValueError(f"{path}: invalid RAVDESS file name field (emotion 01-08, others 01-02); is the file renamed?")
    if actor != folder_actor:
        raise ValueError(f"{path}: actor {actor:02d} in the file name but the folder is Actor_{folder_actor:02d}")
    raw, meld = EMOTION_CODES[emo]
    return Clip(path=path, actor=actor, emotion=meld, raw_emotion=raw, intensity=intensity,
                statement=statement, repetition=repetition)


def load_ravdess(root: str | Path | None = None, actors: Iterable[int] | None = None) -> list[Clip]:
    """Speech clips under `root` (folder of `Actor_XX/` folders; default `<data root>/ravdess`),
    optionally only those of `actors`, sorted by actor then file name."""
    base = require_root(root, "ravdess")
    wanted = None if actors is None else {int(a) for a in actors}
    if wanted is not None and not wanted <= set(range(1, NUM_ACTORS + 1)):
        raise ValueError(f"RAVDESS actors are 1-{NUM_ACTORS}; got {sorted(wanted)}")
    clips: list[Clip] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and ACTOR_DIR_RE.match(p.name)):
        actor = int(ACTOR_DIR_RE.match(folder.name).group(1))  # type: ignore[union-attr]
        if wanted is not None and actor not in wanted:
            continue
        for path in sorted(folder.iterdir()):
            clip = _clip(path, actor) if path.is_file() else None
            if clip is not None:
                clips.append(clip)
    if not clips:
        which = "" if wanted is None else f" for actors {sorted(wanted)}"
        raise FileNotFoundError(
            f"no RAVDESS speech clips (Actor_XX/03-01-*.flac|wav){which} under {base}: download them from {SOURCES['ravdess']}"
        )
    return clips


def actor_folds(actors: list[int], k: int = 5, seed: int = 0) -> list[list[int]]:
    """Split distinct `actors` into `k` disjoint folds covering them all, deterministic for `seed`.

    Each fold gets as equal a number of male (odd) and female (even) actors as possible, and fold
    sizes differ by at most one.
    """
    unique = sorted(set(int(a) for a in actors))
    if not 2 <= k <= len(unique):
        raise ValueError(f"need 2 <= k <= number of distinct actors ({len(unique)}); got k={k}")
    rng = random.Random(seed)
    males = [a for a in unique if a % 2 == 1]
    females = [a for a in unique if a % 2 == 0]
    rng.shuffle(males)
    rng.shuffle(females)
    folds: list[list[int]] = [[] for _ in range(k)]
    for i, a in enumerate(males + females):  # females continue the round-robin where males stopped
        folds[i % k].append(a)
    return [sorted(f) for f in folds]
