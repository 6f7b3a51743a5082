"""The run list of `harness runs`: a table for the terminal, CSV or JSON for export."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd


def runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run and task: run id, date, model, hashes, task, main metric and its value."""
    flat = [
        {
            "run_id": r["run_id"],
            "created": r["created"],
            "model": r["model"],
            "model_sha256": r["model_sha256"],
            "spec_sha256": r["spec_sha256"],
            "task": task,
            "metric": r["scores"].get(task, {}).get("metric"),
            "value": r["scores"].get(task, {}).get("value"),
        }
        for r in rows
        for task in r["tasks"] or [None]
    ]
    columns = ["run_id", "created", "model", "model_sha256", "spec_sha256", "task", "metric", "value"]
    return pd.DataFrame(flat, columns=columns)


def export_runs(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "csv":
        return runs_frame(rows).to_csv(index=False)
    return json.dumps(rows, indent=2, ensure_ascii=False)


def runs_table(rows: list[dict[str, Any]]):
    """A rich Table: one line per run, its tasks and main scores."""
    from rich.table import Table

    table = Table()
    for col in ("run", "created", "model", "spec", "tasks"):
        table.add_column(col)
    for r in rows:
        tasks = ", ".join(f"{t} {r['scores'][t]['value']:.4g}" if t in r["scores"] else t for t in r["tasks"])
        table.add_row(r["run_id"], (r["created"] or "")[:19], r["model"] or "", (r["spec_sha256"] or "")[:12], tasks)
    return table
