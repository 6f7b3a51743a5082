"""What produced a number: library versions, the machine, harness's git state (env.json, cards, specs)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# what a run's numbers depend on, in env.json's order
RUN_LIBRARIES = ("harness", "lm_eval", "torch", "transformers", "datasets", "accelerate", "tokenizers", "numpy")


def installed_versions(distributions: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None where absent), for run records and cards."""
    out: dict[str, str | None] = {}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def collect_env(model_identity: dict[str, Any], started: float) -> dict[str, Any]:
    """Library versions, device and git state: what is needed to reproduce the numbers."""
    import torch

    device: dict[str, Any] = {
        "name": model_identity.get("device"),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        device["cuda"] = torch.cuda.get_device_name(0)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": installed_versions(RUN_LIBRARIES),
        "device": device,
        "git": git_state(Path(__file__).resolve().parent),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "seconds": round(time.time() - started, 2),
        "argv": sys.argv,
    }


def _git(*args: str, path: Path | None = None) -> str:
    where = ["-C", str(path)] if path is not None else []
    return subprocess.run(["git", *where, *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()


def quiet_git_describe() -> str | None:
    """`git describe --always` of the working directory, or None; git's own complaints stay unprinted."""
    try:
        return _git("describe", "--always")
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(path: Path) -> dict[str, Any] | None:
    """The commit of the checkout holding `path` and whether it has uncommitted changes."""
    try:
        return {"commit": _git("rev-parse", "HEAD", path=path), "dirty": bool(_git("status", "--porcelain", path=path))}
    except (OSError, subprocess.SubprocessError):
        return None  # installed from a wheel, or git absent
