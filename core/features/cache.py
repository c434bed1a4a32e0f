"""On-disk cache of extracted features: one .npy per (source content, extractor version, params).

Layout: `<root>/<version-slug>/<2-char prefix>/<sha256>.npy`, where the hash covers the source (the
SHA-256 of a file's bytes, or explicit key parts), the extractor's version string and any params.
Files are written atomically (temp file + os.replace) and read with `allow_pickle=False`; a file
that cannot be read is recomputed and replaced, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

CACHE_ENV = "MLSAN_CACHE"  # environment variable overriding the default root
DEFAULT_ROOT = Path("~/.cache/mlsan-live/features")  # used when CACHE_ENV is unset
SLUG_MAX = 80  # longest directory name made from a version string
KEY_FORMAT = "mlsan-feature-cache/1"  # part of every key: bump to invalidate all entries

log = logging.getLogger(__name__)


def default_cache_root() -> Path:
    """$MLSAN_CACHE, else ~/.cache/mlsan-live/features."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else DEFAULT_ROOT.expanduser()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version_slug(version: str) -> str:
    """A directory name for a version string: unsafe characters become '_', long ones get a hash tail."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", version).strip("._") or "unversioned"
    if len(slug) > SLUG_MAX:
        slug = f"{slug[: SLUG_MAX - 13]}-{hashlib.sha256(version.encode()).hexdigest()[:12]}"
    return slug


class FeatureCache:
    """`get_or_compute(source, version, compute)`: load the cached array or compute, store and return it."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self.hits = 0  # lookups answered from disk by this object
        self.misses = 0  # lookups that called compute()
        self._file_hashes: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256

    def _source_digest(self, source: os.PathLike[str] | tuple[str, ...]) -> str:
        if isinstance(source, tuple):
            if not all(isinstance(part, str) for part in source):
                raise ValueError("cache key parts must all be strings; convert numbers with str()")
            return "parts:" + json.dumps(list(source))
        if isinstance(source, os.PathLike):
            path = Path(source)
            if not path.is_file():
                raise ValueError(f"cannot cache features of {path}: not a file; check the path")
            st = path.stat()
            memo = (str(path.resolve()), st.st_mtime_ns, st.st_size)
            if memo not in self._file_hashes:
                self._file_hashes[memo] = file_sha256(path)
            return "file:" + self._file_hashes[memo]
        raise ValueError(
            f"cache source must be a Path (hashed by content) or a tuple of strings, got {type(source).__name__}"
        )

    def key(
        self,
        source: os.PathLike[str] | tuple[str, ...],
        version: str,
        params: Mapping[str, object] | None = None,
    ) -> str:
        """Hex SHA-256 naming the entry for this source content, extractor version and params."""
        if not version:
            raise ValueError("an extractor version string is required to cache its features")
        material = {
            "format": KEY_FORMAT,
            "source": self._source_digest(source),
            "version": version,
            "params": dict(params or {}),
        }
        blob = json.dumps(material, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def path_for(self, key: str, version: str) -> Path:
        return self.root / version_slug(version) / key[:2] / f"{key}.npy"

    def get_or_compute(
        self,
        source: os.PathLike[str] | tuple[str, ...],
        version: str,
        compute: Callable[[], np.ndarray],
        params: Mapping[str, object] | None = None,
    ) -> np.ndarray:
        """Cached array for (source, version, params), or `compute()`'s result, stored first.

        `source` is a file Path (its content is hashed) or a tuple of strings (used as given).
        To cache "nothing found", return an empty array (e.g. `np.zeros(0, np.float32)`).
        """
        path = self.path_for(self.key(source, version, params), version)
        if path.is_file():
            try:
                arr = np.load(path, allow_pickle=False)
                self.hits += 1
                return arr
            except (OSError, ValueError, EOFError) as err:
                log.warning("feature cache entry %s is unreadable (%s); recomputing", path, err)
        self.misses += 1
        arr = np.asarray(compute())
        if arr.dtype == object:
            raise ValueError("compute() returned an object array; features must be numeric ndarrays")
        self._write(path, arr)
        return arr

    @staticmethod
    def _write(path: Path, arr: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
