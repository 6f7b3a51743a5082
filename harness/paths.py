"""Where harness keeps what it computes once: converted weights, hash memos, indexes, the request cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted weights and hash memos live: $HARNESS_CACHE_DIR or ~/.cache/harness."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness")
