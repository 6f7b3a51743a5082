"""The strategy ladder's report: per rung its score with a 95 % interval, what it cost, and its
difference from the first rung with a paired significance test (the same documents in every rung).

Rungs are paired by document id: every rung of a ladder evaluates the same split in the same order
(a retrieval rung changes the prompt, and with it lm-eval's doc hash, not the document). Pairs whose
targets differ are not paired; with none left the test falls back to the unpaired z-test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.record import RunRecord, TaskScore, compare_scores, scored_samples
from harness.reports.compare import md_cell
from harness.scorers.paired import PairedTest
from harness.store import as_record

Z95 = 1.959963984540054


@dataclass
class RungRow:
    name: str
    task: str
    run_id: str | None
    metric: str | None = None
    value: float | None = None
    stderr: float | None = None
    n: int | None = None
    tokens_computed: int | None = None
    from_cache: int | None = None
    seconds: float | None = None
    retrieval: dict[str, float] | None = None
    test: PairedTest | None = None  # against the first rung
    skipped: str | None = None
    overlap: Mapping[str, Any] | None = None  # an adapter rung: its training data's overlap with the task

    @property
    def ci95(self) -> tuple[float, float] | None:
        if self.value is None or self.stderr is None:
            return None
        return (self.value - Z95 * self.stderr, self.value + Z95 * self.stderr)


Rung = tuple[str, str, "RunRecord | str | os.PathLike | None", "str | None"]


def ladder_rows(rungs: list[Rung], metric: str | None = None, seed: int = 1234) -> list[RungRow]:
    """rungs: (name, task, run (a record or its folder) or None, why skipped). The first rung run is the reference."""
    rows: list[RungRow] = []
    reference: tuple[TaskScore, dict[str, tuple[float, Any]]] | None = None
    for name, task, run, skipped in rungs:
        if run is None:
            rows.append(RungRow(name, task, None, skipped=skipped or "not run"))
            continue
        record = as_record(run)
        score = _score(record, task, metric)
        runner = record.env.get("runner", {})
        per_doc = {
            str(s.doc_id): (float(s.row[score.metric]), s.target)
            for s in scored_samples(record.samples(), score).values()
        }
        retrieval = {s.metric: s.value for s in record.tasks[task].scores if s.metric.startswith(("recall@", "mrr@"))}
        row = RungRow(
            name,
            task,
            record.run_id,
            score.metric,
            score.value,
            score.stderr,
            len(per_doc) or None,
            runner.get("tokens_computed"),
            runner.get("requests_from_cache"),
            record.env.get("seconds"),
            retrieval or None,
        )
        row.overlap = record.contamination.get(task)
        if reference is None:
            reference = (score, per_doc)
        else:
            row.test = _against(reference, score, per_doc, seed)
        rows.append(row)
    if reference is None:
        raise UserError("the ladder has no rung that ran")
    return rows


def _score(record: RunRecord, task: str, metric: str | None) -> TaskScore:
    """The task's main score, or its score of the ladder's metric."""
    main = record.main_score(task)
    if main is None:
        raise UserError(f"run {record.run_id} has no score for task '{task}'")
    if metric is None or main.metric == metric:
        return main
    named = record.tasks[task].score(metric)
    if named is None:
        raise UserError(f"task '{task}' has no metric '{metric}' (it has {main.metric})")
    return named


def _against(
    reference: tuple[TaskScore, dict[str, tuple[float, Any]]],
    score: TaskScore,
    per_doc: dict[str, tuple[float, Any]],
    seed: int,
) -> PairedTest:
    """The rung against the reference rung, paired by document where both have the same target."""
    ref_score, ref_docs = reference
    same = {k for k in set(ref_docs) & set(per_doc) if ref_docs[k][1] == per_doc[k][1]}
    return compare_scores(
        ref_score, score, {k: ref_docs[k][0] for k in same}, {k: per_doc[k][0] for k in same}, seed=seed
    )


def ladder_markdown(title: str, description: str, rows: list[RungRow], alpha: float = 0.05) -> str:
    """The ladder as a markdown table, first rung the reference."""
    ref = next(r for r in rows if r.run_id)
    lines = [
        f"# harness ladder: {md_cell(title)}",
        "",
        md_cell(description),
        "",
        f"| rung | task | {ref.metric} | 95 % CI | n | Δ vs {md_cell(ref.name)} | 95 % CI of Δ | p | test "
        "| retrieval | tokens computed | seconds | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.run_id is None:
            lines.append(
                f"| {md_cell(r.name)} | {md_cell(r.task)} | skipped: {md_cell(r.skipped)} | | | | | | | | | | |"
            )
            continue
        ci = f"[{r.ci95[0]:.4f}, {r.ci95[1]:.4f}]" if r.ci95 else "–"
        if r.test is None:
            delta = dci = p = test = "–"
        else:
            delta = f"**{r.test.delta:+.4f}**" if r.test.p_value < alpha else f"{r.test.delta:+.4f}"
            dci = f"[{r.test.ci95[0]:+.4f}, {r.test.ci95[1]:+.4f}]"
            p, test = f"{r.test.p_value:.3g}", r.test.test
        retrieval = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r.retrieval.items())) if r.retrieval else "–"
        cached = f" ({r.from_cache} requests cached)" if r.from_cache else ""
        lines.append(
            f"| {md_cell(r.name)} | {md_cell(r.task)} | {r.value:.4f} | {ci} | {r.n or '–'} | {delta} | {dci} | {p} "
            f"| {test} | {retrieval} | {r.tokens_computed if r.tokens_computed is not None else '–'}{cached} "
            f"| {r.seconds if r.seconds is not None else '–'} | {r.run_id} |"
        )
    lines += [f"- {md_cell(r.name)}: {overlap_note(r.overlap)}" for r in rows if r.overlap]
    lines += [
        "",
        f"Bold: the difference from {md_cell(ref.name)} is significant at {alpha} (McNemar's exact test for 0/1 "
        "scores, the paired bootstrap otherwise; samples paired by document).",
    ]
    return "\n".join(lines) + "\n"


def overlap_note(overlap: Mapping[str, Any]) -> str:
    """What a rung's adapter card says of its training data's overlap with the evaluated split."""
    counts = overlap.get("counts") or {}
    return (
        f"its adapter's training data ({overlap.get('task')} {overlap.get('trained_on') or ''}) overlaps "
        f"{overlap.get('split')} in {overlap.get('flagged')} of {overlap.get('documents')} documents "
        f"({counts.get('input', 0)} input, {counts.get('input-and-label', 0)} input-and-label; "
        f"longest span {overlap.get('longest')} words, word {overlap.get('n')}-grams)"
    )


def render_ladder(title: str, description: str, rows: list[RungRow], out: str | Path, alpha: float = 0.05) -> Path:
    """The ladder as one self-contained HTML page: the table and a bar per rung with its interval."""
    from harness.reports.html import render_page

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ran = [r for r in rows if r.value is not None]
    top = max([r.ci95[1] if r.ci95 else r.value for r in ran if r.value is not None] + [1e-9])
    data = []
    for r in rows:
        entry = {
            "name": r.name,
            "task": r.task,
            "run_id": r.run_id,
            "skipped": r.skipped,
            "metric": r.metric,
            "value": r.value,
            "ci": list(r.ci95) if r.ci95 else None,
            "n": r.n,
            "retrieval": r.retrieval,
            "tokens": r.tokens_computed,
            "seconds": r.seconds,
            "from_cache": r.from_cache,
            "overlap": overlap_note(r.overlap) if r.overlap else None,
        }
        if r.test is not None:
            entry.update(
                delta=r.test.delta,
                delta_ci=list(r.test.ci95),
                p=r.test.p_value,
                test=r.test.test,
                significant=r.test.p_value < alpha,
            )
        if r.value is not None:  # bar geometry, in percent of the widest interval's end
            lo, hi = r.ci95 or (r.value, r.value)
            entry["bar"] = {"value": 100 * r.value / top, "lo": 100 * max(lo, 0) / top, "hi": 100 * hi / top}
        data.append(entry)
    page = render_page(
        "ladder.html.j2",
        ("report.css",),
        title=title,
        description=description,
        rows=data,
        reference=ran[0].name,
        alpha=alpha,
    )
    out.write_text(page, encoding="utf-8")
    return out
