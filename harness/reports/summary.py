"""The score table printed at the end of a run: one row per task (or group) and metric."""

from __future__ import annotations

import math
from typing import Any


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of task, shots, n, metric, value, stderr, 95% interval, signature (groups first)."""
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
            ci = results.get("ci95", {}).get(name, {}).get(key)
            rows.append(
                {
                    "task": name,
                    "group": name in groups,
                    "shots": results.get("n-shot", {}).get(name),
                    "n": n,
                    "metric": metric if filt == "none" else f"{metric} ({filt})",
                    "value": float(value),
                    "stderr": float(stderr) if isinstance(stderr, (int, float)) and not math.isnan(stderr) else None,
                    "ci95": (float(ci[0]), float(ci[1])) if ci else None,
                    "signature": results.get("signatures", {}).get(name, {}).get(key),
                }
            )
    return rows


def score_decimals(value: float) -> int:
    """Four decimals for 0-1 scores, fewer for large ones (perplexity, BLEU on 0-100)."""
    magnitude = abs(value) if math.isfinite(value) else 0.0
    return 1 if magnitude >= 1000 else 2 if magnitude >= 10 else 4


def format_score(value: float | None, decimals: int = 4) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def summary_table(rows: list[dict[str, Any]], title: str):
    """A rich Table: task, shots, n, metric, value, ± stderr, 95% interval."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col, justify in (("task", "left"), ("shots", "right"), ("n", "right"), ("metric", "left"),
                         ("value", "right"), ("± stderr", "right"), ("95% CI", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        name = f"[bold]{r['task']}[/bold]" if r["group"] else f"  {r['task']}"
        ci, d = r.get("ci95"), score_decimals(r["value"])  # stderr and interval at the value's precision
        table.add_row(name, "" if r["shots"] is None else str(r["shots"]), "" if r["n"] is None else str(r["n"]),
                      r["metric"], format_score(r["value"], d), format_score(r["stderr"], d),
                      f"[{format_score(ci[0], d)}, {format_score(ci[1], d)}]" if ci else "")
    return table
