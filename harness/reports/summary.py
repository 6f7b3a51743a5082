"""The score table printed at the end of a run: one row per task (or group) and metric."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.record import RunRecord, task_records


def summary_rows(run: RunRecord | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of task, shots, n, metric, value, stderr, 95% interval, signature (groups first), of a run
    (its record, or lm-eval's results dict of a run just finished)."""
    results, tasks = (run.results, run.tasks) if isinstance(run, RunRecord) else (run, task_records(run))
    groups = list(results.get("groups", {}))
    order = groups + [t for t in results.get("results", {}) if t not in groups]
    return [
        {
            "task": t.name,
            "group": t.group,
            "shots": t.num_fewshot,
            "n": t.n,
            "metric": s.label,
            "value": s.value,
            "stderr": s.stderr,
            "ci95": s.ci95,
            "signature": s.signature,
        }
        for t in (tasks[name] for name in order)
        for s in t.scores
    ]


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
    for col in ("task", "shots", "n", "metric", "value", "± stderr", "95% CI"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for r in rows:
        name = f"[bold]{r['task']}[/bold]" if r["group"] else f"  {r['task']}"
        ci, d = r.get("ci95"), score_decimals(r["value"])  # stderr and interval at the value's precision
        table.add_row(
            name,
            "" if r["shots"] is None else str(r["shots"]),
            "" if r["n"] is None else str(r["n"]),
            r["metric"],
            format_score(r["value"], d),
            format_score(r["stderr"], d),
            f"[{format_score(ci[0], d)}, {format_score(ci[1], d)}]" if ci else "",
        )
    return table
