"""Standard errors and 95% intervals: closed form for means, a vectorised seeded bootstrap otherwise.

The bootstrap draws every resample's indices with numpy at once (in chunks that bound memory) and,
for statistics that are functions of per-sample sums (corpus BLEU/chrF, MCC, F1, perplexities,
Pearson, ECE), turns each resample into a row of summed statistics with one matrix product. lm-eval's
`bootstrap_stderr` instead calls the aggregation in a Python loop once per resample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)
_CELLS_PER_CHUNK = 4_000_000  # indices drawn at once: bounds memory at ~32 MB per chunk


@dataclass(frozen=True)
class Estimate:
    """Uncertainty of one score: standard error, 95% interval, and how they were obtained."""

    stderr: float | None
    ci95: tuple[float, float] | None
    method: str  # "normal" (closed form) or "bootstrap"
    resamples: int | None = None
    seed: int | None = None


def normal_interval(value: float, stderr: float) -> tuple[float, float]:
    """value ± 1.96 stderr."""
    return (float(value - Z95 * stderr), float(value + Z95 * stderr))


def mean_estimate(values: Sequence[float]) -> Estimate:
    """Closed form for a mean: sample std (ddof=1) / sqrt(n), lm-eval's `mean_stderr`; normal interval,
    clipped to the values' range."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return Estimate(None, None, "normal")
    stderr = float(x.std(ddof=1) / np.sqrt(x.size))
    lo, hi = normal_interval(float(x.mean()), stderr)
    # a mean cannot leave the range of its values: 3 of 4 correct is not "[0.26, 1.24]"
    return Estimate(stderr, (max(lo, float(x.min())), min(hi, float(x.max()))), "normal")


def resample_indices(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Indices of `resamples` bootstrap resamples of n items, as (rows, n) chunks; fixed by the seed."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CELLS_PER_CHUNK // max(n, 1))
    done = 0
    while done < resamples:
        take = min(rows, resamples - done)
        yield rng.integers(0, n, size=(take, n))
        done += take


def resample_counts(idx: np.ndarray) -> np.ndarray:
    """How often each item appears in each resample: (rows, n) counts from (rows, n) indices."""
    rows, n = idx.shape
    flat = (idx + (np.arange(rows) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap_sums(stats: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Per-sample statistics (n, k) summed over each resample: (resamples, k)."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[:, None]
    return np.concatenate([resample_counts(idx) @ stats for idx in resample_indices(len(stats), resamples, seed)])


def summarise(replicates: np.ndarray, resamples: int, seed: int) -> Estimate:
    """stderr = std (ddof=1) of the replicates, as lm-eval's bootstrap_stderr; percentile 95% interval."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]  # e.g. a correlation of a resample whose values are all equal
    if reps.size < 2:
        return Estimate(None, None, "bootstrap", resamples, seed)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return Estimate(float(reps.std(ddof=1)), (float(lo), float(hi)), "bootstrap", resamples, seed)


def bootstrap_statistic(
    stats: np.ndarray, score: Callable[[np.ndarray], np.ndarray], resamples: int, seed: int
) -> Estimate:
    """Bootstrap of a score that is a function of summed per-sample statistics (vectorised)."""
    if len(stats) < 2 or resamples < 2:
        return Estimate(None, None, "bootstrap", resamples, seed)
    return summarise(score(bootstrap_sums(stats, resamples, seed)), resamples, seed)


def bootstrap_resampled(n: int, score: Callable[[np.ndarray], np.ndarray], resamples: int, seed: int) -> Estimate:
    """Bootstrap of a score computed from resample indices directly: score(idx (rows, n)) -> (rows,)."""
    if n < 2 or resamples < 2:
        return Estimate(None, None, "bootstrap", resamples, seed)
    reps = np.concatenate([np.asarray(score(idx), dtype=np.float64) for idx in resample_indices(n, resamples, seed)])
    return summarise(reps, resamples, seed)
