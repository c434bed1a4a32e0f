"""Corpora -> `Conversation`s with cached features.

MELD: each dialogue is a conversation; text embeddings of the utterances, speakers by name.
RAVDESS: isolated clips of one actor, arranged as sequences of that actor's clips so the model's
running speaker statistics see 0, 1, 2, ... earlier clips of the same voice (as enrollment and a
meeting would give live). Clips are never context for each other (`in_context=False`): only the
speaker statistics carry over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from core.conversations import Conversation, local_speakers
from core.data.meld import load_meld
from core.data.ravdess import Clip, load_ravdess
from core.features.cache import FeatureCache

RAVDESS_STATEMENTS = {1: "Kids are talking by the door.", 2: "Dogs are sitting by the door."}


# ----------------------------------------------------------------------------------------------
# MELD
# ----------------------------------------------------------------------------------------------
def meld_conversations(split: str, embedder, cache: FeatureCache, root: str | Path | None = None,
                       speaker_ids: dict[str, int] | None = None, limit: int | None = None) -> list[Conversation]:
    """MELD dialogues of `split` with text embeddings (cached per split and encoder version).

    `speaker_ids` maps names to global ids for the speaker loss (grown in place; pass the same dict
    for every split so that e.g. 'Chandler' has one id). `limit`: only the first N dialogues."""
    dialogues = load_meld(split, root)[:limit]
    texts = [u.text for d in dialogues for u in d.utterances]
    emb = cache.get_or_compute(("meld", split, *texts), embedder.version, lambda: embedder.embed(texts))
    ids = speaker_ids if speaker_ids is not None else {}
    convs, i = [], 0
    for d in dialogues:
        n = len(d.utterances)
        names = [u.speaker for u in d.utterances]
        convs.append(Conversation(
            speaker=local_speakers(names),
            labels=np.array(d.labels, dtype=np.int64),
            text=emb[i:i + n].astype(np.float32),
            speaker_key=np.array([ids.setdefault(s, len(ids)) for s in names], dtype=np.int64),
            ids=tuple((split, d.dialogue_id, u.utterance_id) for u in d.utterances),
        ))
        i += n
    return convs


# ----------------------------------------------------------------------------------------------
# RAVDESS
# ----------------------------------------------------------------------------------------------
@dataclass
class ClipTable:
    """Per-clip features, rows aligned with `clips`."""

    clips: list[Clip]
    audio: np.ndarray  # (N, Da)
    voiceprint: np.ndarray  # (N, 256)
    text: np.ndarray  # (N, Dt): embedding of the spoken statement
    audio_version: str

    def rows(self, actors) -> np.ndarray:
        actors = set(actors)
        return np.array([i for i, c in enumerate(self.clips) if c.actor in actors], dtype=np.int64)


def ravdess_table(audio_features, voiceprints, embedder, cache: FeatureCache, root: str | Path | None = None,
                  progress: Progress | None = None) -> ClipTable:
    """Audio features and voiceprints of every RAVDESS clip (cached by file content + version)."""
    from core.features.audio_io import load_audio

    clips = load_ravdess(root)
    audio, vps = [], []
    task = progress.add_task("RAVDESS features", total=len(clips)) if progress else None
    for c in clips:
        pcm: dict[str, np.ndarray] = {}

        def wav() -> np.ndarray:
            if "x" not in pcm:
                pcm["x"] = load_audio(c.path)
            return pcm["x"]

        audio.append(cache.get_or_compute(c.path, audio_features.version, lambda: audio_features(wav())))
        vps.append(cache.get_or_compute(c.path, voiceprints.version, lambda: voiceprints(wav())))
        if progress:
            progress.advance(task)
    statements = embedder.embed([RAVDESS_STATEMENTS[s] for s in sorted(RAVDESS_STATEMENTS)])
    text = np.stack([statements[sorted(RAVDESS_STATEMENTS).index(c.statement)] for c in clips])
    return ClipTable(clips, np.stack(audio).astype(np.float32), np.stack(vps).astype(np.float32),
                     text.astype(np.float32), audio_features.version)


def _sequence(table: ClipTable, rows: np.ndarray, scored: np.ndarray | None, use_text: bool,
              use_voiceprint: bool) -> Conversation:
    return Conversation(
        speaker=np.zeros(len(rows), np.int64),
        labels=np.array([table.clips[i].label for i in rows], dtype=np.int64),
        audio=table.audio[rows],
        text=table.text[rows] if use_text else None,
        voiceprint=table.voiceprint[rows] if use_voiceprint else None,
        in_context=np.zeros(len(rows), bool),
        scored=scored,
        speaker_key=np.array([table.clips[i].actor for i in rows], dtype=np.int64),
        ids=tuple(table.clips[i].path.name for i in rows),
    )


def ravdess_sampler(table: ClipTable, actors, length: tuple[int, int] = (8, 30), use_text: bool = False,
                    use_voiceprint: bool = True) -> Callable[[np.random.Generator], list[Conversation]]:
    """Each call: every clip of `actors` once, in random sequences of one actor's clips."""
    by_actor = {a: table.rows([a]) for a in sorted(set(actors))}

    def sample(rng: np.random.Generator) -> list[Conversation]:
        convs = []
        for rows in by_actor.values():
            rows = rng.permutation(rows)
            i = 0
            while i < len(rows):
                n = int(rng.integers(length[0], length[1] + 1))
                convs.append(_sequence(table, rows[i:i + n], None, use_text, use_voiceprint))
                i += n
        return convs

    return sample


def ravdess_enrolled(table: ClipTable, actors, k: int | None, seed: int = 0, use_text: bool = False,
                     use_voiceprint: bool = True) -> list[Conversation]:
    """The enrollment protocol: for every clip of `actors`, a sequence of k other clips of the same
    actor (unlabelled for the model: they only feed its running speaker statistics) followed by the
    clip, which alone is scored. k=None: all of the actor's other clips."""
    rng = np.random.default_rng(seed)
    convs = []
    for a in sorted(set(actors)):
        rows = table.rows([a])
        for target in rows:
            others = rows[rows != target]
            m = len(others) if k is None else min(k, len(others))
            seq = np.concatenate([rng.choice(others, m, replace=False), [target]])
            scored = np.zeros(len(seq), bool)
            scored[-1] = True
            convs.append(_sequence(table, seq, scored, use_text, use_voiceprint))
    return convs
