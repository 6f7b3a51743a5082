"""Matthews correlation and binary F1 as functions of summed per-sample confusion counts.

Each sample contributes a one-hot row of the confusion matrix; a resample's matrix is the sum of its
rows, so the bootstrap re-sums rows instead of calling sklearn once per resample. At full sample the
formulas give sklearn's `matthews_corrcoef` and `f1_score` (tests check that).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_rows(golds: Sequence, preds: Sequence) -> tuple[np.ndarray, int]:
    """One-hot (n, K*K) rows, cell gold*K + pred over the sorted union of labels; returns (rows, K)."""
    labels = sorted(set(golds) | set(preds), key=repr)
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    cells = np.array([index[g] * k + index[p] for g, p in zip(golds, preds)], dtype=np.int64)
    rows = np.zeros((len(cells), k * k), dtype=np.float64)
    rows[np.arange(len(cells)), cells] = 1.0
    return rows, k


def mcc_from_confusion(sums: np.ndarray, k: int) -> np.ndarray:
    """Multiclass MCC (Gorodkin's R_K, sklearn's formula) per row of flattened K*K confusion counts; 0 if undefined."""
    c = np.atleast_2d(sums).reshape(-1, k, k)  # [gold, pred]
    t = c.sum(axis=2)  # true counts per class
    p = c.sum(axis=1)  # predicted counts per class
    correct = np.trace(c, axis1=1, axis2=2)
    s = c.sum(axis=(1, 2))
    cov_ytyp = correct * s - (t * p).sum(axis=1)
    cov_ypyp = s**2 - (p * p).sum(axis=1)
    cov_ytyt = s**2 - (t * t).sum(axis=1)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom == 0, 0.0, cov_ytyp / denom)


def f1_rows(golds: Sequence, preds: Sequence, positive=1) -> np.ndarray:
    """Per-sample (tp, fp, fn) rows for binary F1 of the positive label."""
    g = np.array([x == positive for x in golds])
    p = np.array([x == positive for x in preds])
    return np.stack([g & p, ~g & p, g & ~p], axis=1).astype(np.float64)


def f1_from_counts(sums: np.ndarray) -> np.ndarray:
    """2tp / (2tp + fp + fn) per row of (tp, fp, fn); 0 when undefined (sklearn's zero_division default)."""
    s = np.atleast_2d(sums)
    denom = 2 * s[:, 0] + s[:, 1] + s[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom == 0, 0.0, 2 * s[:, 0] / denom)
