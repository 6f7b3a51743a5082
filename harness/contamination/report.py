"""The contamination report: per task the documents checked and flagged by class, the longest
span; as a rich table, markdown, and the flags JSON (flagged documents by lm-eval's doc_hash, which
`harness compare RUN --exclude FLAGS.json` and the leaderboard read)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.contamination.overlap import CLEAN, INPUT, INPUT_AND_LABEL, LABEL, DocOverlap
from harness.errors import UserError

FORMAT = "harness-contamination/1"
KINDS = (INPUT, INPUT_AND_LABEL, LABEL)


@dataclass
class TaskOverlap:
    task: str
    split: str | None
    documents: int
    checkable: int  # documents of at least n words
    counts: dict[str, int]  # per class, flagged documents
    longest: int  # the longest span of any document, in words
    mean_share: float  # the mean share of seen n-grams over flagged documents

    @property
    def flagged(self) -> int:
        return sum(self.counts.values())


@dataclass
class Report:
    n: int
    sources: list[str]
    tasks: list[TaskOverlap]
    flagged: list[DocOverlap]
    mode: str = "data"  # or "prompts": each prompt's few-shot examples against its own document
    skipped: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)  # seconds, bytes read, memory


def summarise(
    results: Iterable[DocOverlap], splits: dict[str, str | None]
) -> tuple[list[TaskOverlap], list[DocOverlap]]:
    """Per task (in first-seen order) its counts, and the flagged documents."""
    by_task: dict[str, list[DocOverlap]] = {}
    for r in results:
        by_task.setdefault(r.task, []).append(r)
    tasks, flagged = [], []
    for task, rows in by_task.items():
        hit = [r for r in rows if r.kind != CLEAN]
        flagged += hit
        tasks.append(
            TaskOverlap(
                task,
                splits.get(task),
                len(rows),
                sum(1 for r in rows if r.ngrams),
                {k: sum(1 for r in hit if r.kind == k) for k in KINDS},
                max((r.longest for r in rows), default=0),
                sum(r.share for r in hit) / len(hit) if hit else 0.0,
            )
        )
    return tasks, flagged


def report_markdown(report: Report) -> str:
    what = (
        f"Each prompt's few-shot examples ({', '.join(report.sources)}) against the document it asks about."
        if report.mode == "prompts"
        else f"Evaluation documents against {', '.join(f'`{s}`' for s in report.sources)}."
    )
    lines = [
        f"# Contamination: word {report.n}-grams",
        "",
        what,
        "",
        "| task | split | documents | checkable | input | input-and-label | label only | flagged | "
        "mean share (flagged) | longest span (words) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report.tasks:
        lines.append(
            f"| {t.task} | {t.split or '–'} | {t.documents} | {t.checkable} | {t.counts[INPUT]} | "
            f"{t.counts[INPUT_AND_LABEL]} | {t.counts[LABEL]} | {t.flagged} | {t.mean_share:.3f} | {t.longest} |"
        )
    for task, why in report.skipped.items():
        lines.append(f"| {task} | skipped: {why} | | | | | | | | |")
    lines += [
        "",
        f"Normalisation and {report.n}-grams as lm-eval's decontamination janitor. input: n-grams of the "
        "document's input seen, none holding a label word; input-and-label: label words seen too (OpenCompass's "
        "classes); label only: only n-grams of the label. Checkable: at least n words. Share: the document's "
        "distinct n-grams seen.",
    ]
    if report.stats:
        lines += ["", "; ".join(f"{k}: {v}" for k, v in report.stats.items())]
    return "\n".join(lines) + "\n"


def report_table(report: Report):
    from rich.table import Table

    table = Table(title=f"contamination: word {report.n}-grams")
    for name in ("task", "split", "docs", "checkable", "input", "input+label", "label", "flagged", "share", "longest"):
        table.add_column(name, justify="left" if name in ("task", "split") else "right")
    for t in report.tasks:
        table.add_row(
            t.task,
            t.split or "–",
            f"{t.documents:,}",
            f"{t.checkable:,}",
            str(t.counts[INPUT]),
            str(t.counts[INPUT_AND_LABEL]),
            str(t.counts[LABEL]),
            str(t.flagged),
            f"{t.mean_share:.3f}",
            str(t.longest),
        )
    return table


def report_json(report: Report) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "n": report.n,
        "mode": report.mode,
        "sources": report.sources,
        "tasks": {
            t.task: {
                "split": t.split,
                "documents": t.documents,
                "checkable": t.checkable,
                "flagged": t.flagged,
                "counts": t.counts,
                "longest": t.longest,
                "mean_share": round(t.mean_share, 4),
            }
            for t in report.tasks
        },
        "skipped": report.skipped,
        "flagged": [r.as_dict() for r in report.flagged],
        "stats": report.stats,
    }


def write_flags(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_json(report), indent=1) + "\n", encoding="utf-8")
    return path


def read_flags(path: str | Path) -> dict[str, set[str]]:
    """Per task, the doc_hashes a flags file (from `harness contamination --json`) flags."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--exclude {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise UserError(f"--exclude {path}: not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("flagged"), list):
        raise UserError(f"--exclude {path}: not a flags file of `harness contamination --json`")
    flags: dict[str, set[str]] = {t: set() for t in data.get("tasks", {})}
    for row in data["flagged"]:
        flags.setdefault(str(row.get("task")), set()).add(str(row.get("doc_hash")))
    return flags
