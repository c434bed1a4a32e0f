"""Voiceprints: resemblyzer's GE2E d-vector (256-d, L2-normalized) of a speech segment.

The weights (`pretrained.pt`) ship inside the resemblyzer wheel, so nothing is downloaded.
Preprocessing follows resemblyzer's `preprocess_wav` (volume raised to -30 dBFS, long silences cut
with webrtcvad) but is done here so that silence gives a clear error instead of NaNs.

Threads: this class never changes torch's global thread count. The LSTM is erratic with 2 threads on
a busy 2-core CPU (0.07 s to 6 s per embedding measured); the caller should call
`torch.set_num_threads(1)` once, after every model is loaded (importing silero_vad or creating a
WhisperModel also changes it).
"""

from __future__ import annotations

import importlib.metadata
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from core.device import resolve_device
from core.features.audio_io import SAMPLE_RATE, prepare_pcm
from core.features.cache import file_sha256
from core.features.packaged import package_file

DIM = 256  # GE2E embedding size
MIN_SECONDS = 0.5  # least speech (after silence trimming) accepted; below ~1.5 s embeddings get noisy
TARGET_DBFS = -30.0  # quiet input is raised to this RMS level (resemblyzer's audio_norm_target_dBFS)
PIPELINE_VERSION = "v1"  # bump when the preprocessing here changes


def _weights_path() -> Path:
    return package_file("resemblyzer", "pretrained.pt", "voiceprint weights", "resemblyzer==0.1.4")


def _resemblyzer_audio() -> Any:
    """resemblyzer.audio, imported without its known scipy.ndimage.morphology DeprecationWarning
    (that namespace disappears in SciPy 2.0: keep scipy<2, as pyproject.toml does)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*scipy.ndimage.morphology.*")
        from resemblyzer import audio

    return audio


def _raise_volume(x: np.ndarray) -> np.ndarray:
    """Scale up to TARGET_DBFS RMS if quieter (never down); ValueError for digital silence."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    if rms == 0.0:
        raise ValueError("audio segment is silent (all zeros); a voiceprint needs speech")
    gain_db = TARGET_DBFS - 20.0 * np.log10(rms)
    if gain_db > 0:
        x = x * np.float32(10.0 ** (gain_db / 20.0))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


class VoiceprintExtractor:
    """256-d speaker embedding of a PCM segment; the encoder loads on first use or `load()`."""

    dim: int = DIM

    def __init__(self, device: str = "cpu") -> None:
        self.device = resolve_device(device)  # "cpu", "cuda[:N]" or "auto" (CUDA when available)
        self.weights_path = _weights_path()
        digest = file_sha256(self.weights_path)[:12]
        self.version: str = (
            f"resemblyzer-{importlib.metadata.version('resemblyzer')}/ge2e-{digest}/"
            f"vad-trim/norm{TARGET_DBFS:g}dBFS/{PIPELINE_VERSION}"
        )
        self._encoder: Any = None  # resemblyzer.VoiceEncoder, created by load()

    def load(self) -> None:
        """Load the encoder now (~1.5 s with the torch import)."""
        if self._encoder is None:
            _resemblyzer_audio()  # resemblyzer/__init__ imports it: silence its warning first
            from resemblyzer import VoiceEncoder

            self._encoder = VoiceEncoder(self.device, verbose=False, weights_fpath=self.weights_path)

    def speech(self, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The 16 kHz float32 samples the embedding is computed from (volume-normalized, silences cut)."""
        x = prepare_pcm(pcm, sample_rate, SAMPLE_RATE)
        if x.size < MIN_SECONDS * SAMPLE_RATE:
            raise ValueError(
                f"audio segment is {x.size / SAMPLE_RATE:.2f} s; a voiceprint needs >= {MIN_SECONDS} s of speech"
            )
        return _resemblyzer_audio().trim_long_silences(_raise_volume(x))

    def __call__(self, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """(n,) or (n, channels) float/int16 PCM -> (256,) float32, unit L2 norm; ValueError below MIN_SECONDS of speech."""
        wav = self.speech(pcm, sample_rate)
        if wav.size < MIN_SECONDS * SAMPLE_RATE:
            raise ValueError(
                f"only {wav.size / SAMPLE_RATE:.2f} s of speech after removing silence; a voiceprint needs "
                f">= {MIN_SECONDS} s (>= 1.5 s for a reliable one)"
            )
        self.load()
        emb = np.asarray(self._encoder.embed_utterance(wav), dtype=np.float64)
        norm = float(np.linalg.norm(emb))
        if not np.isfinite(norm) or norm == 0.0:
            raise RuntimeError("voice encoder returned a zero or non-finite embedding; check the input audio")
        return (emb / norm).astype(np.float32)

    def __repr__(self) -> str:
        return f"VoiceprintExtractor(device={str(self.device)!r}, version={self.version!r})"
