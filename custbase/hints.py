"""Commands the project prints for the user to run: each one works verbatim in a fresh shell at the repo root.

``custbase`` itself is only on PATH inside the project environment, so a printed command is either a Makefile
target (``make score``) or ``uv run custbase ...``. Light on purpose: the CLI's error paths import it.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def uv() -> str:
    """``uv`` when it is on PATH, else the uv package of python3 (as the Makefile falls back to)."""
    return "uv" if shutil.which("uv") else "python3 -m uv"


def custbase(args: str) -> str:
    """``uv run custbase ARGS``: the CLI through the project environment, from the repo root."""
    return f"{uv()} run custbase {args}".rstrip()


def make(target: str, config: Path | str | None = None, **variables: object) -> str:
    """``make TARGET VAR=value ...`` (``CONFIG=file`` when a configuration file other than the default is in use)."""
    parts = ["make", target, *(f"{name}={value}" for name, value in variables.items() if value is not None)]
    if config is not None:
        parts.append(f"CONFIG={config}")
    return " ".join(parts)
