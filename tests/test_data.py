"""Data loaders: MELD CSVs, RAVDESS clips, feature pickles (safe unpickling), paths, text clean-up."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.data import paths
from core.data.meld import emotion_counts, load_meld
from core.data.pickles import (
    IEMOCAP_LABELS,
    UnsafePickleError,
    label_names,
    load_feature_pickle,
    split_dev,
)
from core.data.ravdess import actor_folds, load_ravdess
from core.data.text import normalize_text
from core.labels import EMOTIONS, emotion_index

DATA = paths.default_data_root()
MELD_DIR = DATA / "meld" if DATA is not None else None
RAVDESS_DIR = DATA / "ravdess" if DATA is not None else None
needs_meld = pytest.mark.skipif(
    MELD_DIR is None or not (MELD_DIR / "train_sent_emo.csv").is_file(),
    reason="MELD CSVs not found (set MLSAN_DATA or place them in ../shared/data/meld)",
)
needs_ravdess = pytest.mark.skipif(
    RAVDESS_DIR is None or not RAVDESS_DIR.is_dir(),
    reason="RAVDESS not found (set MLSAN_DATA or place it in ../shared/data/ravdess)",
)

HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\r\n"


def _row(sr: int, text: str, emotion: str, dia: int, utt: int, speaker: str = "Ross") -> str:
    return f'{sr},"{text}",{speaker},{emotion},neutral,{dia},{utt},3,7,"00:01:00,000","00:01:02,000"\r\n'


# ---------------------------------------------------------------- paths


def test_missing_root_says_where_to_get_the_data(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="declare-lab/MELD"):
        load_meld("train", root=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="1188976"):
        load_ravdess(root=tmp_path / "nope")
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))  # a data root without meld/ in it
    assert paths.default_data_root() == tmp_path
    with pytest.raises(FileNotFoundError, match=r"meld data not found at .*MLSAN_DATA"):
        load_meld("dev")
    (tmp_path / "meld").mkdir()  # folder present, CSV absent
    with pytest.raises(FileNotFoundError, match="dev labels not found"):
        load_meld("dev")
    with pytest.raises(ValueError, match="unknown dataset"):
        paths.require_root(None, "iemocap")


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    "raw, clean",
    [
        # MELD train line 3, typographic and as mis-decoded by latin-1 / cp1252 / twice
        ("You must’ve had your hands full.", "You must've had your hands full."),
        ("You must\u00e2\u0080\u0099ve had your hands full.", "You must've had your hands full."),
        ("You mustâ€™ve had your hands full.", "You must've had your hands full."),
        ("You mustÃ¢â‚¬â„¢ve had your hands full.", "You must've had your hands full."),
        # raw cp1252 bytes of old MELD copies (declare-lab/MELD PR 28), read as latin-1, and re-encoded
        ("Oh my God, he\x92s lost it.", "Oh my God, he's lost it."),
        ("Oh my God, heÂ\x92s lost it.", "Oh my God, he's lost it."),
        ("Ah\x85 Ah\x85Get out of here!", "Ah... Ah...Get out of here!"),
        ("Are you serious—Really?!  I", "Are you serious - Really?! I"),
        ("It’s still——It’s got a", "It's still - It's got a"),
        ("don’t “Aww Pheebs, that sucks!” me yet.", "don't \"Aww Pheebs, that sucks!\" me yet."),
        ("Uh, Paul’s CafÃ©.", "Uh, Paul's Café."),
        ("Nestlé Toll House?", "Nestlé Toll House?"),  # real accents survive
        ("  Olé!\u00a0 Adiós.\u200b ", "Olé! Adiós."),
    ],
)
def test_normalize_text_fixes_mojibake_and_punctuation(raw, clean):
    assert normalize_text(raw) == clean
    assert normalize_text(clean) == clean  # idempotent


# ---------------------------------------------------------------- MELD

MELD_EXPECTED = {"train": (9989, 1038), "dev": (1109, 114), "test": (2610, 280)}


@needs_meld
@pytest.mark.parametrize("split", list(MELD_EXPECTED))
def test_meld_counts_match_the_published_numbers(split):
    dialogues = load_meld(split, MELD_DIR)
    n_utt, n_dia = MELD_EXPECTED[split]
    assert sum(len(d.utterances) for d in dialogues) == n_utt
    assert len(dialogues) == n_dia
    for d in dialogues:
        ids = [u.utterance_id for u in d.utterances]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(u.dialogue_id == d.dialogue_id and d.split == split for u in d.utterances)
        assert all(u.text and "’" not in u.text and "\u2026" not in u.text for u in d.utterances)
    assert [d.dialogue_id for d in dialogues] == sorted(d.dialogue_id for d in dialogues)


@needs_meld
def test_meld_train_distribution_speakers_and_gaps():
    train = load_meld("train")  # default root
    assert emotion_counts(train) == {"neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109,
                                     "sadness": 683, "disgust": 271, "fear": 268}
    assert len({u.speaker for d in train for u in d.utterances}) == 260
    first = train[0]
    assert first.utterances[0].text == "also I was the point person on my company's transition from the KL-5 to GR-6 system."
    assert first.speakers == ("Chandler", "The Interviewer")
    assert first.labels == tuple(emotion_index(u.emotion) for u in first.utterances)
    dev49 = next(d for d in load_meld("dev") if d.dialogue_id == 49)  # ids 4 and 5 are missing
    assert [u.utterance_id for u in dev49.utterances][:5] == [0, 1, 2, 3, 6]
    assert 60 not in {d.dialogue_id for d in train}  # train has no dialogue 60


def test_meld_csv_with_unknown_emotion_names_the_row(tmp_path):
    (tmp_path / "dev_sent_emo.csv").write_text(
        HEADER + _row(1, "Hi.", "neutral", 0, 0) + _row(2, "What?", "happiness", 0, 1), encoding="utf-8", newline=""
    )
    with pytest.raises(ValueError, match=r"dev_sent_emo.csv line 3 \(Sr No. 2\): unknown emotion label 'happiness'"):
        load_meld("dev", tmp_path)


def test_meld_csv_sorting_gaps_and_cp1252_bytes(tmp_path):
    body = HEADER + _row(1, "Later.", "joy", 5, 3) + _row(2, "First.", "anger", 5, 0) + _row(3, "Other.", "fear", 2, 0)
    raw = body.encode("utf-8").replace(b"Later.", b"He\x92s late\x85")  # an old cp1252 byte in a UTF-8 file
    (tmp_path / "test_sent_emo.csv").write_bytes(b"\xef\xbb\xbf" + raw)  # with a BOM, too
    dialogues = load_meld("test", tmp_path)
    assert [d.dialogue_id for d in dialogues] == [2, 5]
    assert [(u.utterance_id, u.text) for u in dialogues[1].utterances] == [(0, "First."), (3, "He's late...")]
    assert dialogues[1].labels == (emotion_index("anger"), emotion_index("joy"))


def test_meld_duplicate_utterance_and_bad_split(tmp_path):
    (tmp_path / "train_sent_emo.csv").write_text(HEADER + _row(1, "a", "joy", 0, 0) + _row(2, "b", "joy", 0, 0))
    with pytest.raises(ValueError, match="duplicate utterance 0 in dialogue 0"):
        load_meld("train", tmp_path)
    with pytest.raises(ValueError, match="unknown MELD split 'valid'"):
        load_meld("valid", tmp_path)


# ---------------------------------------------------------------- RAVDESS


@needs_ravdess
def test_ravdess_clips_and_mapping():
    clips = load_ravdess(RAVDESS_DIR)
    assert len(clips) == 1200
    assert sorted({c.actor for c in clips}) == list(range(1, 21))
    assert all(c.emotion in EMOTIONS for c in clips)
    calm = [c for c in clips if c.raw_emotion == "calm"]
    assert len(calm) == 160 and {c.emotion for c in calm} == {"neutral"}
    assert Counter(c.emotion for c in clips)["neutral"] == 240  # 80 neutral + 160 calm
    assert {c.raw_emotion: c.emotion for c in clips} == {
        "neutral": "neutral", "calm": "neutral", "happy": "joy", "sad": "sadness", "angry": "anger",
        "fearful": "fear", "disgust": "disgust", "surprised": "surprise"}
    c = next(c for c in clips if c.path.name == "03-01-02-02-01-02-17.flac")
    assert (c.actor, c.raw_emotion, c.intensity, c.statement, c.repetition) == (17, "calm", 2, 1, 2)
    assert {c.actor for c in load_ravdess(RAVDESS_DIR, actors=[3, 4])} == {3, 4}


def test_actor_folds_disjoint_covering_balanced_deterministic():
    actors = list(range(1, 21))
    folds = actor_folds(actors + actors[:5], k=5, seed=0)  # duplicates are ignored
    assert len(folds) == 5
    assert sorted(a for f in folds for a in f) == actors  # disjoint and covering
    for f in folds:
        assert sum(a % 2 for a in f) == 2 and len(f) == 4  # 2 male + 2 female each
    assert folds == actor_folds(actors, k=5, seed=0)
    assert folds != actor_folds(actors, k=5, seed=1)
    uneven = actor_folds(list(range(1, 24)), k=4, seed=3)
    assert sorted(a for f in uneven for a in f) == list(range(1, 24))
    assert max(map(len, uneven)) - min(map(len, uneven)) <= 1
    with pytest.raises(ValueError, match="k <= number of distinct actors"):
        actor_folds([1, 2], k=3)


def test_ravdess_skips_other_files_and_refuses_empty(tmp_path):
    actor = tmp_path / "Actor_02"
    actor.mkdir()
    for name in ("03-01-05-02-01-01-02.wav", "03-02-05-01-01-01-02.wav", "readme.txt", "03-01-05-01-01-01-02.mp3"):
        (actor / name).touch()
    clips = load_ravdess(tmp_path)
    assert [(c.path.name, c.emotion, c.actor) for c in clips] == [("03-01-05-02-01-01-02.wav", "anger", 2)]
    with pytest.raises(FileNotFoundError, match="no RAVDESS speech clips"):
        load_ravdess(tmp_path, actors=[1])
    (actor / "03-01-05-01-01-01-09.wav").touch()  # actor 09 filed under Actor_02
    with pytest.raises(ValueError, match="folder is Actor_02"):
        load_ravdess(tmp_path)


# ---------------------------------------------------------------- feature pickles


def _meld_tuple(visual: bool) -> tuple:
    rng = np.random.default_rng(0)
    ids = {0: ["d0_u0", "d0_u1", "d0_u2"], 1: ["d1_u0", "d1_u1"], 7: ["d7_u0"]}
    lengths = {k: len(v) for k, v in ids.items()}
    one_hot = lambda i: [1.0 if j == i else 0.0 for j in range(9)]  # noqa: E731
    speakers = {k: [one_hot(i % 2 + 3) for i in range(n)] for k, n in lengths.items()}
    labels = {0: [0, 4, 6], 1: [1, 2], 7: [5]}  # MELD pickle order: neutral, joy, anger / surprise, fear / disgust
    text = {k: [rng.standard_normal(6).astype(np.float32) for _ in range(n)] for k, n in lengths.items()}
    audio = {k: rng.standard_normal((n, 4)) for k, n in lengths.items()}
    vis = {k: rng.standard_normal((n, 3)).astype(np.float32) for k, n in lengths.items()}
    sentences = {0: ["Hi.", "You must\u00e2\u0080\u0099ve", "No!"], 1: ["A", "B"], 7: ["C"]}
    if visual:  # MMGCN MELD_features_raw1.pkl
        return ids, speakers, labels, text, audio, vis, sentences, [0, 1], [7], None
    return ids, speakers, labels, text, audio, sentences, [0, 1], [7], {k: [0] * n for k, n in lengths.items()}


def _iemocap_tuple() -> tuple:
    keys = [f"Ses0{i}F_impro0{i}" for i in range(1, 6)]
    lengths = dict(zip(keys, [3, 2, 4, 1, 2]))
    speakers = {k: ["M" if i % 2 else "F" for i in range(n)] for k, n in lengths.items()}
    labels = {k: [np.int64(i % 6) for i in range(n)] for k, n in lengths.items()}
    feats = lambda d: {k: np.ones((n, d), np.float64) for k, n in lengths.items()}  # noqa: E731
    sentences = {k: [f"line {i}" for i in range(n)] for k, n in lengths.items()}
    return ({k: [f"{k}_{i}" for i in range(n)] for k, n in lengths.items()}, speakers, labels, feats(100),
            feats(100), feats(512), sentences, set(keys[:4]), set(keys[4:]))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_meld_pickle_loads_and_maps_labels(tmp_path, protocol):
    path = tmp_path / "MELD_features_raw1.pkl"
    path.write_bytes(pickle.dumps(_meld_tuple(visual=True), protocol=protocol))
    dialogues = load_feature_pickle(path, "meld")
    assert [(d.id, d.split) for d in dialogues] == [(0, "train"), (1, "train"), (7, "test")]
    d0 = dialogues[0]
    assert d0.labels == [emotion_index("neutral"), emotion_index("joy"), emotion_index("anger")]
    assert dialogues[1].labels == [emotion_index("surprise"), emotion_index("fear")]
    assert dialogues[2].labels == [emotion_index("disgust")]
    assert d0.speakers == [3, 4, 3]
    assert d0.text.shape == (3, 6) and d0.audio.shape == (3, 4) and d0.visual.shape == (3, 3)
    assert d0.text.dtype == np.float32
    assert d0.sentences[1] == "You must've"
    assert label_names("meld") == EMOTIONS


def test_meld_pickle_without_visual(tmp_path):
    path = tmp_path / "MELD_features_raw.pkl"
    path.write_bytes(pickle.dumps(_meld_tuple(visual=False), protocol=2))
    dialogues = load_feature_pickle(path, "meld")
    assert [d.visual.shape for d in dialogues] == [(3, 0), (2, 0), (1, 0)]


def test_iemocap_pickle_keeps_its_six_classes_and_split_dev(tmp_path):
    path = tmp_path / "IEMOCAP_features.pkl"
    path.write_bytes(pickle.dumps(_iemocap_tuple(), protocol=2))
    dialogues = load_feature_pickle(path, "iemocap")
    assert label_names("iemocap") == IEMOCAP_LABELS == ("happy", "sad", "neutral", "angry", "excited", "frustrated")
    assert [d.split for d in dialogues] == ["train"] * 4 + ["test"]
    assert dialogues[0].id == "Ses01F_impro01" and dialogues[0].labels == [0, 1, 2]
    assert dialogues[0].speakers == [1, 0, 1] and dialogues[2].visual.shape == (4, 512)
    carved = split_dev(dialogues, fraction=0.25, seed=0)
    assert Counter(d.split for d in carved) == {"train": 3, "dev": 1, "test": 1}
    assert [d.id for d in carved] == [d.id for d in dialogues]
    assert [d.split for d in carved] == [d.split for d in split_dev(dialogues, fraction=0.25, seed=0)]
    assert carved[-1] is dialogues[-1]
    with pytest.raises(ValueError, match="fraction"):
        split_dev(dialogues, fraction=1.0)
    with pytest.raises(ValueError, match="expected a 9-tuple"):
        load_feature_pickle(_write(tmp_path, (1, 2)), "iemocap")


def _write(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps(obj))
    return path


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("nested", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, nested):
    marker = tmp_path / "pwned"
    obj = _Evil(marker)
    if nested:  # hidden in the sentences of an otherwise valid MELD pickle
        t = list(_meld_tuple(visual=True))
        t[6] = {0: ["Hi.", obj, "No!"], 1: ["A", "B"], 7: ["C"]}
        obj = tuple(t)
    path = tmp_path / "MELD_features_raw1.pkl"
    path.write_bytes(pickle.dumps(obj))
    assert b"system" in path.read_bytes()
    with pytest.raises(UnsafePickleError, match=r"refusing to load (posix|nt)\.system"):
        load_feature_pickle(path, "meld")
    assert not marker.exists()


def test_other_unsafe_globals_and_truncated_pickles(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_feature_pickle(path, "iemocap")
    path.write_bytes(pickle.dumps(_iemocap_tuple())[:200])
    with pytest.raises(ValueError, match="not a readable pickle"):
        load_feature_pickle(path, "iemocap")
    with pytest.raises(FileNotFoundError, match="feature pickle not found"):
        load_feature_pickle(tmp_path / "missing.pkl", "iemocap")
