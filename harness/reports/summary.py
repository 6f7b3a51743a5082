"""The score table printed at the end of a run: one row per task (or group) and metric."""

from __future__ import annotations

import math
from typing import Any


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of task, shots, n, metric, value, stderr from an lm-eval results dict (groups first)."""
    rows = []
    groups = list(results.get("groups", {}))
    order = groups + [t for t in results.get("results", {}) if t not in groups]
    for name in order:
        metrics = results.get("groups", {}).get(name) or results["results"].get(name, {})
        n = results.get("n-samples", {}).get(name, {}).get("effective")
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append(
                {
                    "task": name,
                    "group": name in groups,
                    "shots": results.get("n-shot", {}).get(name),
                    "n": n,
                    "metric": metric if filt == "none" else f"{metric} ({filt})",
                    "value": float(value),
                    "stderr": float(stderr) if isinstance(stderr, (int, float)) and not math.isnan(stderr) else None,
                }
            )
    return rows
