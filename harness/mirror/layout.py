"""What a family module declares: the original release a mirror may hold for a hub dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Layout:
    """An original release a mirror may hold for a hub dataset."""

    marker: str  # path under the mirror root that shows the release is there
    load: Callable[[Path, str | None], Any]
    description: str
