"""lm-eval's corpus perplexity aggregations as functions of summed (loglikelihood, count) statistics."""

from __future__ import annotations

import numpy as np


def weighted_perplexity_from_sums(sums: np.ndarray) -> np.ndarray:
    """exp(-Σ loglikelihood / Σ units) per row of (Σ ll, Σ words-or-bytes): lm-eval's weighted_perplexity."""
    sums = np.atleast_2d(sums)
    return np.exp(-sums[:, 0] / sums[:, 1])


def bits_per_byte_from_sums(sums: np.ndarray) -> np.ndarray:
    """-Σ loglikelihood / Σ bytes / ln 2 per row of (Σ ll, Σ bytes): lm-eval's bits_per_byte."""
    sums = np.atleast_2d(sums)
    return -sums[:, 0] / sums[:, 1] / np.log(2)
