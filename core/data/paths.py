"""Where the datasets live: an explicit root, `$MLSAN_DATA`, or `<repo>/../shared/data`."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MLSAN_DATA"  # folder holding one sub-folder per dataset (meld/, ravdess/, ...)
REPO_ROOT = Path(__file__).resolve().parents[2]  # core/data/paths.py -> repository root
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # offline copy next to the checkout, if any

# Dataset folder name -> where a user gets it (shown in every "not found" error).
SOURCES: dict[str, str] = {
    "meld": "https://github.com/declare-lab/MELD (the *_sent_emo.csv label files)",
    "ravdess": "https://zenodo.org/record/1188976 (Audio_Speech_Actors_01-24.zip, Actor_XX/ folders)",
    "crema-d": "https://github.com/CheyneyComputerScience/CREMA-D",
}


def default_data_root() -> Path | None:
    """`$MLSAN_DATA` if set, else `<repo>/../shared/data` if it exists, else None."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def require_root(root: str | Path | None, name: str) -> Path:
    """The folder of dataset `name`: `root` itself if given, else `<default_data_root()>/<name>`.

    Raises FileNotFoundError saying where to download the data when the folder does not exist.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(SOURCES)}")
    hint = f"download it from {SOURCES[name]} and pass its folder as root=, or set {ENV_VAR} to a folder holding {name}/"
    if root is not None:
        path = Path(root).expanduser()
    else:
        base = default_data_root()
        if base is None:
            raise FileNotFoundError(f"no data folder for {name}: {hint}")
        path = base / name
    if not path.is_dir():
        raise FileNotFoundError(f"{name} data not found at {path}: {hint}")
    return path
