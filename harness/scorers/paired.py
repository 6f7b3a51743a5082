"""Paired significance tests for two systems scored on the same samples.

McNemar's exact test for 0/1 scores (a binomial test on the discordant pairs, scipy's binomtest),
and the paired bootstrap (Koehn 2004) for any per-sample score: resample the samples, recompute the
mean difference, read its 95 % interval and a two-sided p-value from the replicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 10_000


@dataclass(frozen=True)
class PairedTest:
    test: str  # "mcnemar" or "paired bootstrap"
    delta: float  # mean of b - a
    ci95: tuple[float, float]  # of the delta (paired bootstrap percentiles)
    p_value: float
    n: int
    a_only: int | None = None  # McNemar: samples right in a only
    b_only: int | None = None  # ... and in b only


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 1234,
) -> tuple[tuple[float, float], float]:
    """95 % interval of mean(b - a) and the two-sided p-value of 'no difference'."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    n = len(diff)
    if n == 0:
        return (float("nan"), float("nan")), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # bounded memory: 1000 x n indices at a time
        stop = min(resamples, start + 1000)
        means[start:stop] = diff[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    # share of replicates on the other side of zero (or at it), both tails; at least one replicate's worth
    p = 2 * min((means <= 0).mean(), (means >= 0).mean())
    return (float(low), float(high)), float(min(1.0, max(p, 1.0 / resamples)))


def mcnemar_exact(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, int, int]:
    """Exact McNemar p-value for paired 0/1 scores, and the discordant counts (right in a only, in b only)."""
    from scipy.stats import binomtest

    a01, b01 = np.asarray(a) >= 0.5, np.asarray(b) >= 0.5
    a_only, b_only = int((a01 & ~b01).sum()), int((~a01 & b01).sum())
    if a_only + b_only == 0:
        return 1.0, 0, 0
    return float(binomtest(b_only, a_only + b_only, 0.5).pvalue), a_only, b_only


def compare_paired(
    a: Sequence[float], b: Sequence[float], resamples: int = DEFAULT_RESAMPLES, seed: int = 1234
) -> PairedTest:
    """McNemar where every score is 0 or 1, else the paired bootstrap; the delta's interval by bootstrap."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ci, p = paired_bootstrap(a_arr, b_arr, resamples, seed)
    delta = float((b_arr - a_arr).mean()) if len(a_arr) else float("nan")
    if len(a_arr) and np.isin(a_arr, (0.0, 1.0)).all() and np.isin(b_arr, (0.0, 1.0)).all():
        p_mc, a_only, b_only = mcnemar_exact(a_arr, b_arr)
        return PairedTest("mcnemar", delta, ci, p_mc, len(a_arr), a_only, b_only)
    return PairedTest("paired bootstrap", delta, ci, p, len(a_arr))


def unpaired_z(a: float, se_a: float | None, b: float, se_b: float | None) -> tuple[tuple[float, float], float]:
    """95 % interval of b - a and a two-sided p-value from two standard errors (no per-sample scores)."""
    from scipy.stats import norm

    delta = b - a
    se = float(np.hypot(se_a or 0.0, se_b or 0.0))
    if se == 0.0:
        return (delta, delta), (1.0 if delta == 0 else 0.0)
    return (delta - 1.959964 * se, delta + 1.959964 * se), float(2 * norm.sf(abs(delta) / se))
