"""Precomputed-feature pickles of the DialogueRNN / DialogueGCN / MMGCN family, loaded safely.

Layouts (each a tuple of dicts keyed by dialogue id, plus the train/test id collections):
  iemocap   `IEMOCAP_features.pkl` (9): videoIDs, videoSpeakers ('M'/'F'), videoLabels, videoText,
            videoAudio, videoVisual, videoSentence, trainVid, testVid.
            Labels: 0 hap, 1 sad, 2 neu, 3 ang, 4 exc, 5 fru (kept as IEMOCAP_LABELS).
  meld (10) `MELD_features_raw1.pkl` (MMGCN, MM-DFN): videoIDs, videoSpeakers (one-hot lists),
            videoLabels, videoText, videoAudio, videoVisual, videoSentence, trainVid, testVid, _.
  meld (9)  `MELD_features_raw.pkl` (DialogueRNN/DialogueGCN): videoIDs, videoSpeakers, videoLabels,
            videoText, videoAudio, videoSentence, trainVid, testVid, videoLabelsSentiment
            (no visual features: `visual` is a (T, 0) array).
  MELD labels in these files use MELD's own order (MELD_PICKLE_LABELS, as in the declare-lab/MELD
  README: neutral 0, surprise 1, fear 2, sadness 3, joy 4, disgust 5, anger 6) and are mapped here
  to core.labels order.
There is no dev set: `split_dev` carves one from train (the MELD pickles fold MELD dev into train).

Security: pickles can run code on load. `SafeUnpickler` resolves only the globals numpy arrays and
plain containers need and refuses everything else with `UnsafePickleError`, before it is called.
"""

from __future__ import annotations

import importlib
import io
import pickle
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.data.text import normalize_text
from core.labels import EMOTIONS, emotion_index

IEMOCAP_LABELS: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "excited", "frustrated")
MELD_PICKLE_LABELS: tuple[str, ...] = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
MELD_PICKLE_TO_EMOTION: tuple[int, ...] = tuple(emotion_index(n) for n in MELD_PICKLE_LABELS)
# Dataset -> the label names that PickleDialogue.labels index into.
LABEL_NAMES: dict[str, tuple[str, ...]] = {"iemocap": IEMOCAP_LABELS, "meld": EMOTIONS}
IEMOCAP_SPEAKERS: dict[str, int] = {"M": 0, "F": 1}

# The only globals a feature pickle may name. numpy.core.* (numpy 1.x writers) and numpy._core.*
# (numpy 2.x) are the same functions; __builtin__ is Python 2's builtins.
NUMPY_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("multiarray", "_reconstruct"),  # ndarray pickles (protocol <= 4)
    ("multiarray", "scalar"),  # numpy scalars (np.int64(3))
    ("numeric", "_frombuffer"),  # ndarray pickles (protocol 5)
})
SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {(f"{pkg}.{mod}", name) for pkg in ("numpy.core", "numpy._core") for mod, name in NUMPY_GLOBALS}
    | {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode")}
    | {(b, n) for b in ("builtins", "__builtin__")
       for n in ("list", "dict", "set", "frozenset", "tuple", "bytearray", "complex", "bytes", "str", "int", "float")}
)


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle that names a global outside SAFE_GLOBALS (it could run code); nothing was called."""


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only SAFE_GLOBALS (numpy arrays, scalars, dtypes, plain containers)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: feature pickles may only contain numpy arrays and plain "
                "containers; this file could run code - do not use it unless you made it yourself"
            )
        if module.startswith(("numpy.core.", "numpy._core.")):
            sub = module.split(".", 2)[2]
            for pkg in ("numpy._core", "numpy.core"):  # numpy 2 names first (numpy.core warns there)
                try:
                    return getattr(importlib.import_module(f"{pkg}.{sub}"), name)
                except (ImportError, AttributeError):
                    continue
        return super().find_class(module, name)


def safe_load(data: bytes) -> Any:
    """Unpickle `data` with SafeUnpickler; latin-1 lets Python 2 pickles (numpy buffers) load."""
    return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields have no single truth value
class PickleDialogue:
    id: int | str  # dialogue key in the pickle (MELD: int, IEMOCAP: "Ses01F_impro01", ...)
    dataset: str  # "iemocap" or "meld"; labels index LABEL_NAMES[dataset]
    speakers: list[int]  # per utterance: speaker index (IEMOCAP 0 M / 1 F; MELD argmax of one-hot)
    labels: list[int]  # per utterance: index into LABEL_NAMES[dataset] (MELD: core.labels order)
    text: np.ndarray  # (T, Dt) float32 text features
    audio: np.ndarray  # (T, Da) float32 audio features
    visual: np.ndarray  # (T, Dv) float32 visual features; Dv = 0 when the file has none
    sentences: list[str]  # per utterance: text after normalize_text
    split: str  # "train", "dev" (after split_dev) or "test"


def label_names(dataset: str) -> tuple[str, ...]:
    """Class names for PickleDialogue.labels of `dataset`."""
    if dataset not in LABEL_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(LABEL_NAMES)}")
    return LABEL_NAMES[dataset]


def _speaker(value: Any, where: str) -> int:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        if value.strip().upper() in IEMOCAP_SPEAKERS:
            return IEMOCAP_SPEAKERS[value.strip().upper()]
        raise ValueError(f"{where}: speaker {value!r} is neither 'M'/'F' nor a one-hot vector")
    arr = np.asarray(value)
    if arr.ndim == 0:
        return int(arr)
    if arr.ndim == 1 and arr.size > 0:
        return int(np.argmax(arr))
    raise ValueError(f"{where}: speaker {value!r} is neither 'M'/'F' nor a one-hot vector")


def _features(value: Any, n: int, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{where}: expected a ({n}, D) feature matrix, got shape {arr.shape}")
    return arr


def _sentence(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return normalize_text(str(value))


def _ordered(ids: Any) -> list[Any]:
    """Keep list order; sort sets (no order of their own) so loading is deterministic."""
    if isinstance(ids, (set, frozenset, dict)):
        return sorted(ids, key=lambda x: (isinstance(x, str), x))
    return list(ids)


def _unpack(obj: Any, dataset: str, path: Path) -> tuple[Any, ...]:
    """-> speakers, labels, text, audio, visual (or None), sentences, train ids, test ids."""
    n = len(obj) if isinstance(obj, (tuple, list)) else -1
    if dataset == "iemocap" and n == 9:
        _, spk, lab, txt, aud, vis, sen, tr, te = obj
    elif dataset == "meld" and n == 10:
        _, spk, lab, txt, aud, vis, sen, tr, te, _ = obj
    elif dataset == "meld" and n == 9:
        _, spk, lab, txt, aud, sen, tr, te, _ = obj
        vis = None
    else:
        want = "a 9-tuple" if dataset == "iemocap" else "a 10-tuple (MMGCN) or 9-tuple (DialogueRNN)"
        raise ValueError(f"{path}: expected {want} for {dataset}, got {type(obj).__name__} of length {n}; wrong dataset= or file?")
    return spk, lab, txt, aud, vis, sen, tr, te


def load_feature_pickle(path: str | Path, dataset: str) -> list[PickleDialogue]:
    """Dialogues (train then test) from a DialogueRNN/DialogueGCN/MMGCN feature pickle.

    `dataset` is "iemocap" or "meld". MELD labels are mapped to core.labels order; IEMOCAP keeps
    its six classes (`label_names("iemocap")`). Raises UnsafePickleError for a pickle naming
    anything but numpy arrays and containers, ValueError for a malformed one.
    """
    names = label_names(dataset)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"feature pickle not found at {path}: pass the path of e.g. IEMOCAP_features.pkl or MELD_features_raw1.pkl")
    try:
        obj = safe_load(path.read_bytes())
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except (EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path} is not a readable pickle ({e}); re-download it") from None
    spk, lab, txt, aud, vis, sen, train_ids, test_ids = _unpack(obj, dataset, path)
    train, test = _ordered(train_ids), _ordered(test_ids)
    overlap = set(train) & set(test)
    if overlap:
        raise ValueError(f"{path}: dialogues {sorted(overlap, key=str)[:5]} are in both train and test")
    out: list[PickleDialogue] = []
    for split, ids in (("train", train), ("test", test)):
        for key in ids:
            where = f"{path.name} dialogue {key!r}"
            try:
                raw_labels = [int(x) for x in lab[key]]
                n = len(raw_labels)
                speakers = [_speaker(s, where) for s in spk[key]]
                sentences = [_sentence(s) for s in sen[key]]
                text, audio = _features(txt[key], n, f"{where} text"), _features(aud[key], n, f"{where} audio")
                visual = np.zeros((n, 0), np.float32) if vis is None else _features(vis[key], n, f"{where} visual")
            except KeyError:
                raise ValueError(f"{where}: listed in {split} ids but missing from a feature dict") from None
            if len(speakers) != n or len(sentences) != n:
                raise ValueError(f"{where}: {n} labels but {len(speakers)} speakers and {len(sentences)} sentences")
            bad = [x for x in raw_labels if not 0 <= x < len(names)]
            if bad:
                raise ValueError(f"{where}: labels {bad} outside 0..{len(names) - 1} for {dataset}")
            labels = [MELD_PICKLE_TO_EMOTION[x] for x in raw_labels] if dataset == "meld" else raw_labels
            out.append(PickleDialogue(id=key, dataset=dataset, speakers=speakers, labels=labels, text=text,
                                      audio=audio, visual=visual, sentences=sentences, split=split))
    return out


def split_dev(dialogues: Sequence[PickleDialogue], fraction: float = 0.1, seed: int = 0) -> list[PickleDialogue]:
    """Same dialogues with round(fraction * n_train) (at least 1) train dialogues re-marked "dev",
    chosen by `seed`; test dialogues untouched. Order is preserved."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1 (exclusive); got {fraction}")
    train_idx = [i for i, d in enumerate(dialogues) if d.split == "train"]
    if len(train_idx) < 2:
        raise ValueError(f"need at least 2 train dialogues to carve a dev set; got {len(train_idx)}")
    n_dev = min(len(train_idx) - 1, max(1, round(fraction * len(train_idx))))
    dev = set(random.Random(seed).sample(train_idx, n_dev))
    return [replace(d, split="dev") if i in dev else d for i, d in enumerate(dialogues)]
