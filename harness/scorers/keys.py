"""lm-eval's result keys (`acc,none`, `acc_stderr,none`): which are scores, and how they split.

The scorers write these keys and the run record reads them, so they live below both.
"""

from __future__ import annotations

import numbers
from typing import Any


def is_score(key: str, value: Any) -> bool:
    """A metric value of lm-eval's results (`acc,none`), not its stderr, alias or sample count."""
    return "," in key and "_stderr," not in key and isinstance(value, numbers.Real) and not isinstance(value, bool)


def split_key(key: str) -> tuple[str, str]:
    """`metric,filter` -> (metric, filter)."""
    metric, filt = key.split(",", 1)
    return metric, filt


def stderr_key(metric: str, filt: str) -> str:
    """lm-eval's key of a score's standard error."""
    return f"{metric}_stderr,{filt}"


WORST = "_worst_"


def worst_metric(metric: str, perturbation: str) -> str:
    """The worst-case metric of `metric` over perturbation set `perturbation`: `acc_worst_robustness`."""
    return f"{metric}{WORST}{perturbation}"


def parse_worst(metric: str) -> tuple[str, str | None]:
    """`acc_worst_robustness` -> ("acc", "robustness"); a plain metric -> (metric, None)."""
    base, sep, perturbation = metric.partition(WORST)
    return (base, perturbation) if sep and base and perturbation else (metric, None)
