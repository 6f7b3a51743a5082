"""The leaderboard's metric groups, as HELM's tabs: accuracy, calibration, robustness, fairness, efficiency.

Per task a group reads one figure of a run:
- accuracy: the task's main score (its first metric);
- calibration: its expected calibration error (`ece`, stored for multiple-choice tasks);
- robustness, fairness: the worst case of the main metric over the perturbations of that set,
  stored as `<metric>_worst_<set>` (`acc_worst_robustness`) beside the clean `<metric>`;
- efficiency: model seconds per 1,000 documents (harness.efficiency; lower is better), with tokens
  per second, tokens, device and latency beside it; from runs without perturbations only (a perturbed
  run's time also covers each document's perturbed versions).
Each group ranks the rows by HELM's mean win rate over the tasks that have a figure in that group.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.efficiency import EFFICIENCY_COLUMNS
from harness.record import FRAME_COLUMNS, RunRecord, TaskRecord, TaskScore, scores_frame
from harness.scorers.keys import worst_metric

GROUPS = ("accuracy", "calibration", "robustness", "fairness", "efficiency")
PERTURBATION_SETS = {"robustness": "robustness", "fairness": "fairness"}  # group -> perturbation set
EFFICIENCY_LABEL = "s / 1k docs"
DOWNLOAD_COLUMNS = ("tab", "win_rate", *FRAME_COLUMNS, *EFFICIENCY_COLUMNS)


@dataclass
class Cell:
    value: float
    metric: str  # as shown (`acc`, `exact_match (first_number)`, `s / 1k docs`)
    ci95: tuple[float, float] | None
    stderr: float | None
    n: int | None
    run_id: str
    created: str | None
    source: tuple[str, str] = ("", "")  # the (metric, filter) of the run's score behind the cell
    higher_is_better: bool = True
    extra: Mapping[str, Any] | None = None  # efficiency: every figure of the task
    contamination: Mapping[str, Any] | None = None  # the run's contamination report of the task, if any


def group_score(group: str, task: TaskRecord) -> TaskScore | None:
    """The score of `task` that `group` shows (efficiency has none: see efficiency_cell)."""
    main = task.main
    if main is None:
        return None
    if group == "accuracy":
        return main
    if group == "calibration":
        return next((s for s in task.scores if s.metric == "ece" and s.filter == main.filter), task.score("ece"))
    if group in PERTURBATION_SETS:
        name = worst_metric(main.metric, PERTURBATION_SETS[group])
        return next((s for s in task.scores if s.metric == name and s.filter == main.filter), None)
    return None


def record_cells(record: RunRecord, group: str) -> Iterable[tuple[str, Cell]]:
    """(task, cell) for each task or group of a run with a figure in `group`."""
    for name, task in record.tasks.items():
        main = task.main
        if main is None:
            continue
        if group == "efficiency":
            if record.settings.get("perturb"):  # its time covers the perturbed evaluations too: not comparable
                continue
            e = task.efficiency
            value = e.seconds_per_1k_docs if e is not None else None
            if e is None or value is None:
                continue
            yield (
                name,
                Cell(
                    value,
                    EFFICIENCY_LABEL,
                    None,
                    None,
                    e.documents,
                    record.run_id,
                    record.created,
                    (main.metric, main.filter),
                    False,
                    e.to_dict(),
                ),
            )
            continue
        score = group_score(group, task)
        if score is not None and math.isfinite(score.value):
            cell = Cell(score.value, score.label, score.ci95, score.stderr, score.n, record.run_id, record.created)
            cell.source, cell.higher_is_better = (score.metric, score.filter), score.higher_is_better
            yield name, cell


def mean_win_rates(cells_by_row: Mapping[str, Mapping[str, Cell]], tasks: Iterable[str]) -> dict[str, float | None]:
    """HELM's mean win rate per row: per task, the share of the other rows with a figure that this row
    beats (ties count half), averaged over the tasks where the row has one; tasks with fewer than two
    rows are skipped, and a row never compared gets None. As compute_aggregate_row_win_rates in
    stanford-crfm/helm, src/helm/benchmark/presentation/summarize.py (aggregation "mean")."""
    wins: dict[str, list[float]] = {key: [] for key in cells_by_row}
    for task in tasks:
        have = {key: cells[task] for key, cells in cells_by_row.items() if task in cells}
        if len(have) < 2:
            continue
        for key, cell in have.items():
            sign = 1.0 if cell.higher_is_better else -1.0
            mine = sign * cell.value
            beaten = sum(
                1.0 if mine > sign * o.value else 0.5 if mine == sign * o.value else 0.0
                for k, o in have.items()
                if k != key
            )
            wins[key].append(beaten / (len(have) - 1))
    return {key: sum(w) / len(w) if w else None for key, w in wins.items()}


# ---------------------------------------------------------------------------------- downloads
def download_rows(board: Any, records: Mapping[str, RunRecord]) -> list[dict[str, Any]]:
    """Every cell of every group as harness.load_runs has it (the run's row for the cell's task and
    score, efficiency figures included), with the group (`tab`) and the row's win rate in it."""
    frame = scores_frame(records[r] for r in sorted({c.run_id for row in board.rows for c in _all_cells(row)}))
    by_key = {(r["run_id"], r["task"], r["metric"], r["filter"]): r for r in frame.to_dict("records")}
    rows = []
    for row in board.rows:
        for group in GROUPS:
            for task, cell in sorted(row.groups.get(group, {}).items()):
                source = by_key.get((cell.run_id, task, *cell.source))
                if source is not None:
                    rows.append({"tab": group, "win_rate": row.win_rates.get(group), **_plain(source)})
    return rows


def _all_cells(row: Any) -> Iterable[Cell]:
    return (c for cells in row.groups.values() for c in cells.values())


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """pandas' values as JSON's: NaN and missing as None, numpy numbers as Python's."""
    out = {}
    for k in DOWNLOAD_COLUMNS[2:]:
        v: Any = row.get(k)
        if hasattr(v, "item"):
            v = v.item()
        out[k] = None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
    return out


RUN_COLUMNS = ("run_id", "created", "model", "model_sha256", "variant", "label", "spec_sha256")


def download_table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """download_rows compact for the page, which makes the CSV and JSON files from it: each run's own
    columns once (`runs`), each row its run id and the other columns (`rows`), in DOWNLOAD_COLUMNS order."""
    rest = [c for c in DOWNLOAD_COLUMNS if c not in RUN_COLUMNS]
    runs: dict[str, list[Any]] = {}
    for row in rows:
        runs.setdefault(row["run_id"], [row[c] for c in RUN_COLUMNS])
    return {
        "columns": list(DOWNLOAD_COLUMNS),
        "run_columns": list(RUN_COLUMNS),
        "row_columns": ["run_id", *rest],
        "runs": runs,
        "rows": [[row["run_id"], *(row[c] for c in rest)] for row in rows],
    }
