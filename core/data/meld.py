"""MELD label CSVs (`<split>_sent_emo.csv`) -> dialogues of utterances.

Utterance ids are kept as published: MELD has gaps (train dialogue 1 jumps from 5 to 8, dev dialogue
49 from 3 to 6, ...) because utterances without usable video were dropped, and train has no
dialogue 60. Utterances are ordered by Utterance_ID within each dialogue; dialogues by Dialogue_ID.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from core.data.paths import SOURCES, require_root
from core.data.text import normalize_text
from core.labels import EMOTIONS, emotion_index

SPLITS: tuple[str, ...] = ("train", "dev", "test")
CSV_NAME = "{split}_sent_emo.csv"
COLUMNS: tuple[str, ...] = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
)
SENTIMENTS: tuple[str, ...] = ("neutral", "positive", "negative")


@dataclass(frozen=True)
class Utterance:
    dialogue_id: int  # MELD Dialogue_ID (unique within a split only)
    utterance_id: int  # MELD Utterance_ID within the dialogue (may have gaps)
    speaker: str  # speaker name, normalized ("Richard's Date")
    text: str  # utterance text after normalize_text
    emotion: str  # one of core.labels.EMOTIONS
    sentiment: str  # one of SENTIMENTS
    start: str  # StartTime in the episode, "hh:mm:ss,mmm"
    end: str  # EndTime in the episode, "hh:mm:ss,mmm"
    season: int  # Friends season, 1-10
    episode: int  # episode within the season

    @property
    def label(self) -> int:
        """Index of `emotion` in core.labels.EMOTIONS."""
        return emotion_index(self.emotion)


@dataclass(frozen=True)
class Dialogue:
    split: str  # "train", "dev" or "test"
    dialogue_id: int  # MELD Dialogue_ID
    utterances: tuple[Utterance, ...]  # ordered by utterance_id

    @property
    def speakers(self) -> tuple[str, ...]:
        """Distinct speakers in order of first appearance."""
        return tuple(dict.fromkeys(u.speaker for u in self.utterances))

    @property
    def labels(self) -> tuple[int, ...]:
        """Emotion indices (core.labels order), one per utterance."""
        return tuple(u.label for u in self.utterances)


def _decode(raw: bytes) -> str:
    """UTF-8 (BOM allowed); stray cp1252 bytes from old MELD copies become latin-1 chars that
    normalize_text maps back (0x92 -> ’ -> ')."""
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    return "".join(chr(ord(c) - 0xDC00) if "\udc80" <= c <= "\udcff" else c for c in text)


def _int(row: dict[str, str], col: str, where: str) -> int:
    try:
        return int(row[col].strip())
    except ValueError:
        raise ValueError(f"{where}: column {col} is {row[col]!r}, expected an integer") from None


def _utterance(row: dict[str, str], where: str) -> Utterance:
    emotion = row["Emotion"].strip().lower()
    try:
        emotion_index(emotion)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    sentiment = row["Sentiment"].strip().lower()
    if sentiment not in SENTIMENTS:
        raise ValueError(f"{where}: unknown sentiment {row['Sentiment']!r}; expected one of {', '.join(SENTIMENTS)}")
    return Utterance(
        dialogue_id=_int(row, "Dialogue_ID", where),
        utterance_id=_int(row, "Utterance_ID", where),
        speaker=normalize_text(row["Speaker"]),
        text=normalize_text(row["Utterance"]),
        emotion=emotion,
        sentiment=sentiment,
        start=row["StartTime"].strip(),
        end=row["EndTime"].strip(),
        season=_int(row, "Season", where),
        episode=_int(row, "Episode", where),
    )


def load_meld(split: str, root: str | Path | None = None) -> list[Dialogue]:
    """Dialogues of MELD `split` ("train", "dev", "test") from `<root>/<split>_sent_emo.csv`.

    `root` is the folder holding the CSVs (default: `<data root>/meld`). Raises FileNotFoundError
    when the file is missing and ValueError (naming the line) on a malformed row.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MELD split {split!r}; expected one of {', '.join(SPLITS)}")
    path = require_root(root, "meld") / CSV_NAME.format(split=split)
    if not path.is_file():
        raise FileNotFoundError(f"MELD {split} labels not found at {path}: download them from {SOURCES['meld']}")
    reader = csv.DictReader(io.StringIO(_decode(path.read_bytes()), newline=""))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"{path} lacks columns {', '.join(missing)}; is it a MELD *_sent_emo.csv file?")
    by_dialogue: dict[int, dict[int, Utterance]] = {}
    for row in reader:
        where = f"{path.name} line {reader.line_num} (Sr No. {row['Sr No.']})"
        if None in row or any(v is None for v in row.values()):
            raise ValueError(f"{where}: expected {len(reader.fieldnames or ())} fields; the row is malformed")
        u = _utterance(row, where)
        turns = by_dialogue.setdefault(u.dialogue_id, {})
        if u.utterance_id in turns:
            raise ValueError(f"{where}: duplicate utterance {u.utterance_id} in dialogue {u.dialogue_id}")
        turns[u.utterance_id] = u
    if not by_dialogue:
        raise ValueError(f"{path} has no utterances")
    return [
        Dialogue(split=split, dialogue_id=d, utterances=tuple(turns[i] for i in sorted(turns)))
        for d, turns in sorted(by_dialogue.items())
    ]


def emotion_counts(dialogues: list[Dialogue]) -> dict[str, int]:
    """Utterances per emotion, in core.labels order (zeros included)."""
    counts = Counter(u.emotion for d in dialogues for u in d.utterances)
    return {e: counts[e] for e in EMOTIONS}
