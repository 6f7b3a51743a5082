"""Expected calibration error of multiple-choice predictions from their per-choice loglikelihoods.

Confidence of a doc = the largest softmax probability over its choices' loglikelihoods (the model's
probability for the choice lm-eval's `acc` picks); correct = whether that choice is the gold one.
ECE = Σ_b (n_b / N) |accuracy_b - mean confidence_b| over 10 equal-width confidence bins
((0, 0.1], (0.1, 0.2], ..., (0.9, 1.0]), as in Guo et al. (2017). HELM's `ece_10_bin` uses 10
equal-MASS bins instead (uncertainty-calibration's get_ece_em), so the two are not interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import softmax

ECE_BINS = 10


def choice_confidence(loglikelihoods: Sequence[float]) -> float:
    """Max over choices of softmax(loglikelihoods): the probability of the argmax choice."""
    return float(softmax(np.asarray(loglikelihoods, dtype=np.float64)).max())


def confidence_bins(confidences: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Bin index of each confidence for right-closed equal-width bins over (0, 1]."""
    b = np.ceil(np.asarray(confidences, dtype=np.float64) * bins).astype(np.int64) - 1
    return np.clip(b, 0, bins - 1)


def ece_rows(confidences: Sequence[float], correct: Sequence[float], bins: int = ECE_BINS) -> np.ndarray:
    """Per-sample rows (confidence - correct in its bin's column, then 1): ECE is a function of their sums."""
    conf = np.asarray(confidences, dtype=np.float64)
    gap = conf - np.asarray(correct, dtype=np.float64)
    rows = np.zeros((len(conf), bins + 1))
    rows[np.arange(len(conf)), confidence_bins(conf, bins)] = gap
    rows[:, bins] = 1.0
    return rows


def ece_from_sums(sums: np.ndarray) -> np.ndarray:
    """Σ_b |Σ_{i in b} (conf_i - correct_i)| / N per row of summed ece_rows."""
    s = np.atleast_2d(sums)
    return np.abs(s[:, :-1]).sum(axis=1) / s[:, -1]


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[float], bins: int = ECE_BINS) -> float:
    """ECE over equal-width bins (0-1, lower is better)."""
    return float(ece_from_sums(ece_rows(confidences, correct, bins).sum(axis=0))[0])
