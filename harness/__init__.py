"""harness: an LLM evaluation harness built on lm-eval's task format and numbers.

    import harness
    record = harness.evaluate(model="smollm2-135m", tasks=["demo_capitals"], limit=5)
    frame = harness.load_runs("runs")   # one row per run x task x metric

The names below load on first use, so `import harness` (and `harness --help`) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "evaluate": "harness.api",
    "load_runs": "harness.store",
}
__all__ = ["__version__", "evaluate", "load_runs"]

if TYPE_CHECKING:
    from harness.api import evaluate
    from harness.store import load_runs


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
