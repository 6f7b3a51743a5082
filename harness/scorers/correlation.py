"""Pearson and Spearman correlation over a corpus of (prediction, gold) number pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def pearson(predictions: Sequence[float], golds: Sequence[float]) -> float:
    """scipy's Pearson r; NaN (undefined) for fewer than two pairs, where scipy raises."""
    if len(predictions) < 2:
        return float("nan")
    return float(stats.pearsonr(np.asarray(predictions, float), np.asarray(golds, float)).statistic)


def spearman(predictions: Sequence[float], golds: Sequence[float]) -> float:
    """scipy's Spearman rho (average ranks for ties); NaN for fewer than two pairs."""
    if len(predictions) < 2:
        return float("nan")
    return float(stats.spearmanr(np.asarray(predictions, float), np.asarray(golds, float)).statistic)


def pearson_rows(predictions: Sequence[float], golds: Sequence[float]) -> np.ndarray:
    """Per-sample (1, x, y, x², y², xy) rows, centred on the full-sample means for numerical stability."""
    x = np.asarray(predictions, float)
    y = np.asarray(golds, float)
    x, y = x - x.mean(), y - y.mean()  # r is shift-invariant; centring avoids cancellation in the sums
    return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)


def pearson_from_sums(sums: np.ndarray) -> np.ndarray:
    """Pearson r per row of summed (1, x, y, x², y², xy); NaN where a side is constant."""
    n, sx, sy, sxx, syy, sxy = np.atleast_2d(sums).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return (n * sxy - sx * sy) / np.sqrt((n * sxx - sx * sx) * (n * syy - sy * sy))


def spearman_resampled(predictions: Sequence[float], golds: Sequence[float], idx: np.ndarray) -> np.ndarray:
    """Spearman rho of each resample (rows of indices): rank within the resample, then Pearson of ranks."""
    rx = stats.rankdata(np.asarray(predictions, float)[idx], axis=1)
    ry = stats.rankdata(np.asarray(golds, float)[idx], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
