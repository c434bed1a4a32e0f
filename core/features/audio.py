"""Acoustic turn features: openSMILE functionals (eGeMAPSv02 88-d, ComParE_2016 6373-d).

openSMILE (`opensmile` on PyPI) is under the audEERING licence: non-commercial research use only.
Input is resampled to 16 kHz with `scipy.signal.resample_poly` before openSMILE sees it, so live
audio and files at any rate give the same features as 16 kHz material.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import opensmile

from core.features.audio_io import SAMPLE_RATE, prepare_pcm

MIN_SECONDS = 0.1  # shorter input is refused: openSMILE functionals of < 10 frames are meaningless
PIPELINE_VERSION = "v1"  # bump whenever the preprocessing here (conversion, resampling) changes


@dataclass(frozen=True)
class FeatureSetSpec:
    smile_set: opensmile.FeatureSet  # openSMILE configuration
    dim: int  # number of functionals it outputs


FEATURE_SETS: dict[str, FeatureSetSpec] = {
    "egemaps": FeatureSetSpec(opensmile.FeatureSet.eGeMAPSv02, 88),
    "compare": FeatureSetSpec(opensmile.FeatureSet.ComParE_2016, 6373),
}


class AudioFeatures:
    """Turn-level openSMILE functionals of a mono PCM segment; one `opensmile.Smile` per object."""

    def __init__(self, feature_set: str = "egemaps") -> None:
        key = feature_set.strip().lower()
        if key not in FEATURE_SETS:
            raise ValueError(f"unknown audio feature set {feature_set!r}; use one of {', '.join(FEATURE_SETS)}")
        self.feature_set = key
        self._spec = FEATURE_SETS[key]
        self._smile = opensmile.Smile(
            feature_set=self._spec.smile_set, feature_level=opensmile.FeatureLevel.Functionals
        )
        names = list(self._smile.feature_names)
        if len(names) != self._spec.dim:
            raise RuntimeError(
                f"openSMILE {opensmile.__version__} gives {len(names)} {self._spec.smile_set.name} features, "
                f"expected {self._spec.dim}; install opensmile==2.6.0"
            )
        self.feature_names: tuple[str, ...] = tuple(names)
        set_name = self._spec.smile_set.name
        self.version: str = f"opensmile-{opensmile.__version__}/{set_name}/functionals/{SAMPLE_RATE}Hz-{PIPELINE_VERSION}"

    @property
    def dim(self) -> int:
        return self._spec.dim

    def __call__(self, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """(n,) or (n, channels) float/int16 PCM at `sample_rate` -> (dim,) float32, NaN/inf replaced by 0."""
        x = prepare_pcm(pcm, sample_rate, SAMPLE_RATE)
        if x.size < MIN_SECONDS * SAMPLE_RATE:
            raise ValueError(
                f"audio segment is {x.size / SAMPLE_RATE:.3f} s long; need at least {MIN_SECONDS} s for "
                f"{self.feature_set} features"
            )
        frame = self._smile.process_signal(x, SAMPLE_RATE)
        values = frame.to_numpy(dtype=np.float32).reshape(-1)
        if values.shape != (self.dim,):
            raise RuntimeError(f"openSMILE returned {values.shape[0]} values, expected {self.dim}")
        return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)

    def __repr__(self) -> str:
        return f"AudioFeatures({self.feature_set!r}, dim={self.dim}, version={self.version!r})"
