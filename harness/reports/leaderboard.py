"""The leaderboard: stored runs as a models x tasks table (data first), rendered into one HTML file.

A row is a model variant: the weights (sha256) and the settings that change numbers (shots, chat
template, system instruction, generation settings, seed), so a 5-shot run and a 0-shot run of one
model are two rows, and runs of one variant on different tasks fill one row. Where several runs
give the same cell, the latest wins. A column is a top-level task or group (a group's members are
in the per-task view). Each cell holds its task's main metric (the first in the task's
metric_list), its 95 % interval and the run behind it.

Besides accuracy (those main scores) a row has the other metric groups of HELM's tabs, each with
its cells and its own ranking (harness.reports.holistic): calibration, robustness, fairness,
efficiency. Ranking follows HELM: the mean win rate per group (per column, the share of other rows
a row beats, ties half), and for accuracy the macro average over the columns a row has (0-1 metrics
where higher is better). Rows are listed by accuracy's mean win rate.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.hashing import json_sha256
from harness.record import RunRecord
from harness.reports.holistic import (
    GROUPS,
    PERTURBATION_SETS,
    Cell,
    download_rows,
    download_table,
    mean_win_rates,
    record_cells,
)
from harness.reports.html import script_json
from harness.samples import sample_view
from harness.store import RunStore, as_record

SAMPLES_PER_CHUNK = 2000  # samples of one cell are compressed in chunks the browser unpacks on demand


@dataclass
class Row:
    key: str
    label: str
    model: str
    variant: dict[str, Any]
    cells: dict[str, Cell] = field(default_factory=dict)  # accuracy: each task's main score
    macro_average: float | None = None
    mean_win_rate: float | None = None  # in accuracy
    groups: dict[str, dict[str, Cell]] = field(default_factory=dict)  # group -> task -> cell (see holistic)
    win_rates: dict[str, float | None] = field(default_factory=dict)  # group -> mean win rate


@dataclass
class Leaderboard:
    rows: list[Row]
    tasks: list[dict[str, Any]]  # accuracy's columns: name, metric, higher_is_better, top_level, members
    runs: dict[str, dict[str, Any]]  # run id -> metadata shown behind each cell
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # group -> its columns
    downloads: list[dict[str, Any]] = field(default_factory=list)  # every cell as load_runs has it


def build_leaderboard(runs: Iterable[RunRecord | str | os.PathLike]) -> Leaderboard:
    """Rows, columns and rankings from runs (records, or their folders; by run id, so later runs win a cell)."""
    rows: dict[str, Row] = {}
    columns: dict[str, dict[str, dict[str, Any]]] = {g: {} for g in GROUPS}
    meta: dict[str, dict[str, Any]] = {}
    records = {}
    for record in sorted((as_record(r) for r in runs), key=lambda r: r.run_id):
        records[record.run_id] = record
        identity, variant = record.model, record.variant
        key = json_sha256({"model": identity.get("sha256") or identity.get("name"), "variant": variant})
        row = rows.setdefault(key, Row(key, record.label, identity.get("name") or "", variant))
        row.groups = row.groups or {g: ({} if g != "accuracy" else row.cells) for g in GROUPS}
        env = record.env
        meta[record.run_id] = {
            "created": record.created,
            "spec_sha256": record.spec_sha256,
            "model": identity,
            "settings": record.settings,
            "seconds": env.get("seconds"),
            "libraries": env.get("libraries"),
            "device": env.get("device"),
        }
        top_level = _top_level(record)
        for group in GROUPS:
            for task, cell in record_cells(record, group):
                if group == "accuracy":
                    cell.contamination = record.contamination.get(task)
                row.groups[group][task] = cell
                columns[group].setdefault(
                    task,
                    {
                        "name": task,
                        "metric": cell.metric,
                        "higher_is_better": cell.higher_is_better,
                        "top_level": top_level(task),
                        "members": record.results.get("group_subtasks", {}).get(task, []),
                    },
                )
    ordered = {g: sorted(columns[g].values(), key=lambda t: t["name"]) for g in GROUPS}
    _rank(list(rows.values()), ordered)
    board_rows = sorted(rows.values(), key=lambda r: (-(r.mean_win_rate or 0.0), r.label))
    board = Leaderboard(board_rows, ordered["accuracy"], meta, ordered)
    board.downloads = download_rows(board, records)
    return board


def _top_level(record: RunRecord):
    """Whether a task is a column of its own: a member of a group with a score of its own is shown
    under it (per-task view); members of groups without one (demo) are columns themselves."""
    scored = {name for name, t in record.tasks.items() if t.scores}
    group_subtasks = record.results.get("group_subtasks", {})
    subtasks = {t for group, members in group_subtasks.items() if group in scored for t in members}
    return lambda task: task not in subtasks


def _rank(rows: list[Row], groups: dict[str, list[dict[str, Any]]]) -> None:
    """Per group, HELM's mean win rate; for accuracy also the macro average (0-1 metrics where higher is better)."""
    for group, tasks in groups.items():
        rates = mean_win_rates({r.key: r.groups.get(group, {}) for r in rows}, [t["name"] for t in tasks])
        for r in rows:
            r.win_rates[group] = rates[r.key]
    by_name = {t["name"]: t for t in groups["accuracy"]}
    for r in rows:
        bounded = [c.value for name, c in r.cells.items() if _averageable(c.value, by_name.get(name, {}))]
        r.macro_average = sum(bounded) / len(bounded) if bounded else None
        r.mean_win_rate = r.win_rates["accuracy"]


def _averageable(value: float, task: dict[str, Any]) -> bool:
    return task.get("top_level", False) and task.get("higher_is_better", True) and 0.0 <= value <= 1.0


# ---------------------------------------------------------------------------------- samples
def pack_samples(samples: list[dict[str, Any]]) -> list[str]:
    """Samples as base64 gzip JSON chunks: compact in the page, unpacked by the browser when opened."""
    return [
        base64.b64encode(
            gzip.compress(json.dumps(samples[i : i + SAMPLES_PER_CHUNK], ensure_ascii=False).encode("utf-8"), mtime=0)
        ).decode("ascii")
        for i in range(0, len(samples), SAMPLES_PER_CHUNK)
    ]


def board_samples(board: Leaderboard, records: Mapping[str, RunRecord]) -> dict[str, list[str]]:
    """Per row and column ('row key|task'), the cell's samples (of records, by run id) packed for the page."""
    cached: dict[str, dict[str | None, list[dict[str, Any]]]] = {}
    columns = {t["name"]: t for t in board.tasks}
    packed = {}
    for row in board.rows:
        for task, cell in row.cells.items():
            if cell.run_id not in cached:
                by_task: dict[str | None, list[dict[str, Any]]] = {}
                for sample in records[cell.run_id].read_samples():  # without samples: no cells' samples
                    by_task.setdefault(sample.task, []).append(sample_view(sample.row).as_dict())
                cached[cell.run_id] = by_task
            # a group's cell browses its members' samples (subgroups expanded)
            found = [s for name in _leaves(task, columns) for s in cached[cell.run_id].get(name, [])]
            if found:
                packed[f"{row.key}|{task}"] = pack_samples(found)
    return packed


def _leaves(name: str, columns: dict[str, dict[str, Any]]) -> list[str]:
    members = columns.get(name, {}).get("members") or []
    return [leaf for m in members for leaf in _leaves(m, columns)] if members else [name]


def leaderboard_from_store(runs_dir: str | Path) -> tuple[Leaderboard, dict[str, list[str]]]:
    store = RunStore(runs_dir)
    if not store.root.is_dir():
        raise UserError(f"run store '{store.root}' is not a folder: run `harness run` first or give --runs")
    records = store.records()
    if not records:
        raise UserError(f"no runs in '{store.root}': run `harness run --output {store.root}` first")
    board = build_leaderboard(records)
    return board, board_samples(board, {r.run_id: r for r in records})


# ---------------------------------------------------------------------------------- page
EMBED_LIMIT = 6_000_000  # bytes of packed samples kept inside the page; beyond, they go in files beside it


def render_leaderboard(
    board: Leaderboard, samples: dict[str, list[str]], out: str | Path, title: str = "harness leaderboard"
) -> Path:
    """Write the leaderboard page (and, for a large store, its samples beside it as out.samples/)."""
    from datetime import datetime, timezone

    from harness.reports.html import render_page  # jinja2 only when a page is written

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "rows": [_row_data(r) for r in board.rows],
        "tasks": board.tasks,
        "groups": board.groups,
        "runs": board.runs,
        "downloads": download_table(board.downloads),
        "samples": None,
        "sample_files": None,
    }
    if sum(len(c) for chunks in samples.values() for c in chunks) <= EMBED_LIMIT:
        data["samples"] = samples
    else:
        data["sample_files"] = _write_sample_files(samples, out)
    columns = [t for t in board.tasks if t["top_level"]]
    page = render_page(
        "leaderboard.html.j2",
        ("report.css", "leaderboard.js"),
        title=title,
        board=board,
        columns=columns,
        best=_best(board, columns),
        groups={g: [t for t in board.groups.get(g, []) if t["top_level"]] for g in GROUPS},
        group_best={g: _best(board, board.groups.get(g, []), g) for g in GROUPS},
        perturbation_sets=PERTURBATION_SETS,
        fmt=_fmt,
        data=data,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def _row_data(row: Row) -> dict[str, Any]:
    return {
        "key": row.key,
        "label": row.label,
        "model": row.model,
        "variant": row.variant,
        "winrate": row.mean_win_rate,
        "macro": row.macro_average,
        "cells": {task: _cell_data(c) for task, c in row.cells.items()},
        "groups": {g: {task: _cell_data(c) for task, c in cells.items()} for g, cells in row.groups.items()},
        "winrates": row.win_rates,
    }


def _cell_data(c: Cell) -> dict[str, Any]:
    data: dict[str, Any] = {"v": c.value, "ci": c.ci95, "se": c.stderr, "n": c.n, "run": c.run_id, "metric": c.metric}
    if c.extra is not None:
        data["extra"] = dict(c.extra)
    if c.contamination:
        data["contamination"] = dict(c.contamination)
    return data


def _best(board: Leaderboard, columns: list[dict[str, Any]], group: str = "accuracy") -> dict[str, list[str]]:
    """Per column of a group, the keys of the rows with the best score (all of them on a tie)."""
    best = {}
    for column in columns:
        name = column["name"]
        values = {r.key: r.groups[group][name].value for r in board.rows if name in r.groups.get(group, {})}
        if values:
            top = (max if column["higher_is_better"] else min)(values.values())
            best[name] = [key for key, value in values.items() if value == top]
    return best


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    magnitude = abs(value)
    return f"{value:.1f}" if magnitude >= 1000 else f"{value:.2f}" if magnitude >= 10 else f"{value:.4f}"


def _write_sample_files(samples: dict[str, list[str]], out: Path) -> dict[str, list[str]]:
    """One small script per chunk in out.samples/ (a page opened from disk may load scripts, not fetch files)."""
    import shutil

    folder = out.with_name(out.name + ".samples")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    files: dict[str, list[str]] = {}
    for n, (key, chunks) in enumerate(sorted(samples.items())):
        for i, chunk in enumerate(chunks):
            name = f"{n:05d}-{i:03d}.js"
            (folder / name).write_text(f'harnessSamples({script_json(key)},{i},"{chunk}");\n', encoding="utf-8")
            files.setdefault(key, []).append(f"{folder.name}/{name}")
    return files
