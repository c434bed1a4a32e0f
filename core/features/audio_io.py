"""Audio input: read a file or take a PCM array, return mono float32 at a target rate.

`load_audio` reads WAV/FLAC/OGG/MP3 with soundfile (libsndfile) and anything else FFmpeg can open
(FLV, MP4, MKV, WebM, ...) with PyAV, whose wheel bundles the FFmpeg libraries (PyAV is already a
dependency of faster-whisper, so no `ffmpeg` binary is needed). Resampling always goes through
`scipy.signal.resample_poly`, so a file and the same samples passed live give the same features.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000  # the rate every extractor works at
MAX_CHANNELS = 8  # (n, c) arrays with more columns than this are taken to be channels-first by mistake
INT16_SCALE = 32768.0  # int16 full scale -> [-1, 1)
INT32_SCALE = 2147483648.0  # int32 full scale -> [-1, 1)


def to_mono_float32(pcm: np.ndarray) -> np.ndarray:
    """PCM as (n,) or (n, channels), float in [-1, 1] or int16/int32 -> (n,) float32 (channels averaged)."""
    x = np.asarray(pcm)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / INT16_SCALE
    elif x.dtype == np.int32:
        x = x.astype(np.float32) / INT32_SCALE
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
    else:
        raise ValueError(f"unsupported PCM dtype {x.dtype}; pass float32 in [-1, 1] or int16 samples")
    if x.ndim == 2:
        if x.shape[1] > MAX_CHANNELS:
            raise ValueError(
                f"PCM of shape {x.shape} looks channels-first; pass (n_samples,) or (n_samples, n_channels)"
            )
        x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    elif x.ndim != 1:
        raise ValueError(f"PCM must be 1-D (n,) or 2-D (n, channels), got shape {x.shape}")
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("PCM contains NaN or inf samples; fix the audio source before extracting features")
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(x: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a 1-D float32 signal (a no-op when the rates match)."""
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    if orig_rate == target_rate or x.size == 0:
        return x
    g = math.gcd(int(orig_rate), int(target_rate))
    y = resample_poly(x, int(target_rate) // g, int(orig_rate) // g)
    return np.ascontiguousarray(y, dtype=np.float32)


def prepare_pcm(pcm: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`to_mono_float32` then `resample` to `target_rate`: what every extractor does with its input."""
    return resample(to_mono_float32(pcm), int(sample_rate), target_rate)


def _decode_soundfile(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data, int(rate)


def _decode_av(path: Path) -> tuple[np.ndarray, int]:
    import av  # bundled FFmpeg; imported lazily (only containers soundfile cannot read need it)

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream; pass a file that contains audio")
        stream = container.streams.audio[0]
        # planar float at the native rate and layout: channels are averaged and resampled here, not by FFmpeg
        converter = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        rate = 0
        for frame in container.decode(stream):
            rate = rate or int(frame.sample_rate)
            for out in converter.resample(frame):
                chunks.append(out.to_ndarray())
        for out in converter.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks or rate <= 0:
        return np.zeros((0, 1), dtype=np.float32), rate or SAMPLE_RATE
    return np.concatenate(chunks, axis=1).T, rate  # (n, channels)


def load_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio (or audio+video) file as mono float32 at `sample_rate`; ValueError if unusable."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"audio file not found: {p}; check the path (and MLSAN_DATA / --data arguments)")
    if not p.is_file():
        raise ValueError(f"{p} is not a file; pass the path of an audio or video file")
    if p.stat().st_size == 0:
        raise ValueError(f"audio file {p} is empty (0 bytes); re-download or re-export it")
    try:
        data, rate = _decode_soundfile(p)
    except sf.LibsndfileError as sf_err:
        import av

        try:
            data, rate = _decode_av(p)
        except av.FFmpegError as av_err:
            raise ValueError(
                f"cannot decode {p} as audio (libsndfile: {sf_err}; FFmpeg: {av_err}); "
                "check that it is a valid audio/video file or convert it to WAV/FLAC"
            ) from av_err
    if data.shape[0] == 0:
        raise ValueError(f"{p} decodes to 0 audio samples; re-export the file with its audio track")
    return prepare_pcm(data, rate, sample_rate)
