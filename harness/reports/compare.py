"""Runs side by side: per-task deltas with paired significance tests, flipped samples, outputs.

Samples are paired by document (lm-eval's doc_hash, so a changed document is not paired). For a
metric that is 0 or 1 per sample (acc, exact_match) the test is McNemar's exact test and the flips
are the documents one run got right and the other wrong; for other per-sample scores it is the
paired bootstrap; for corpus-level metrics without per-sample scores (BLEU), a z-test on the two
standard errors, unpaired and so conservative.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.record import RunRecord, TaskRecord, TaskScore, compare_scores, doc_order, scored_samples
from harness.samples import sample_view
from harness.scorers.keys import parse_worst, worst_metric
from harness.scorers.paired import PairedTest
from harness.store import as_record, find_run  # noqa: F401  find_run: where the CLI imports it from today

MAX_LISTED = 200  # flipped samples and differing outputs listed per task in the markdown


@dataclass
class TaskDelta:
    task: str
    metric: str
    filter: str
    higher_is_better: bool
    a: float
    b: float
    test: PairedTest
    flips: list[dict[str, Any]] = field(default_factory=list)  # paired docs whose right/wrong differs
    outputs: list[dict[str, Any]] = field(default_factory=list)  # paired docs whose generated text differs

    @property
    def delta(self) -> float:
        return self.b - self.a

    def significant(self, alpha: float = 0.05) -> bool:
        return self.test.p_value < alpha


def compare_runs(
    a_run: RunRecord | str | os.PathLike, b_run: RunRecord | str | os.PathLike, seed: int = 1234
) -> list[TaskDelta]:
    """Per task the two runs share: the main metric of each, a paired test, flips and differing outputs."""
    a, b = as_record(a_run), as_record(b_run)
    ra, rb = a.main_scores(), b.main_scores()
    common = [t for t in ra if t in rb and (ra[t].metric, ra[t].filter) == (rb[t].metric, rb[t].filter)]
    if not common:
        raise UserError(f"runs {a.run_id} and {b.run_id} share no task scored with the same metric")
    deltas = []
    for task in sorted(common):
        deltas.append(_delta(ra[task], rb[task], a, b, seed))
        deltas += [_delta(sa, sb, a, b, seed) for sa, sb in worst_case_pairs(a.tasks[task], b.tasks[task], ra[task])]
    return deltas


def worst_case_pairs(a: TaskRecord, b: TaskRecord, main: TaskScore) -> list[tuple[TaskScore, TaskScore]]:
    """The main metric's worst case over each perturbation set either run scored (`acc_worst_robustness`),
    A's against B's. A run that did not score a set stands in with its clean score: the worst case
    over no perturbation is the original (HELM's worst over the original alone), so a clean run
    against its perturbed run shows what the perturbations cost, paired per document."""
    sets = [
        p
        for s in (*a.scores, *b.scores)
        for base, p in [parse_worst(s.metric)]
        if p is not None and base == main.metric and s.filter == main.filter
    ]
    pairs = []
    for name in dict.fromkeys(sets):
        worst = worst_metric(main.metric, name)
        sa, sb = (r.score_of(worst, main.filter) or r.score_of(main.metric, main.filter) for r in (a, b))
        if sa is not None and sb is not None:
            pairs.append((sa, sb))
    return pairs


def _delta(sa: TaskScore, sb: TaskScore, a: RunRecord, b: RunRecord, seed: int) -> TaskDelta:
    rows_a, rows_b = scored_samples(a.samples(), sa), scored_samples(b.samples(), sb)
    ma, mb = sa.metric, sb.metric
    test = compare_scores(
        sa, sb, {k: s.row[ma] for k, s in rows_a.items()}, {k: s.row[mb] for k, s in rows_b.items()}, seed=seed
    )
    metric = ma if ma == mb else f"{ma} → {mb}"
    delta = TaskDelta(sa.task, metric, sa.filter, sa.higher_is_better, sa.value, sb.value, test)
    sets_a, sets_b = (r.results.get("harness", {}).get("perturbation", {}).get("sets", {}) for r in (a, b))
    for key in sorted(set(rows_a) & set(rows_b), key=doc_order):
        view_a, view_b = rows_a[key].view, rows_b[key].view
        side = {
            "id": view_a.id,
            "prompt": view_a.prompt,
            "target": view_a.target,
            "a_output": worst_output(rows_a[key].row, ma, sets_a) or view_a.output,
            "b_output": worst_output(rows_b[key].row, mb, sets_b) or view_b.output,
            "a_score": rows_a[key].row[ma],
            "b_score": rows_b[key].row[mb],
        }
        if test.test == "mcnemar" and side["a_score"] != side["b_score"]:
            delta.flips.append(side)
        if view_a.output != view_b.output:
            delta.outputs.append(side)
    return delta


def worst_output(row: Mapping[str, Any], metric: str, sets: Mapping[str, Any]) -> str | None:
    """For a worst-case item that is not the clean one, the output it came from: that of the first
    perturbation of the set that scored it, named (`no [mild_mix]`); else None (the clean output)."""
    base, name = parse_worst(metric)
    if name is None or row.get(metric) == row.get(base):
        return None
    for member in sets.get(name, ()):
        perturbed = (row.get("perturbed") or {}).get(member) or {}
        if perturbed.get(base) == row.get(metric) and "filtered_resps" in perturbed:
            return f"{sample_view({**row, 'filtered_resps': perturbed['filtered_resps']}).output} [{member}]"
    return None


def comparison_markdown(names: list[str], comparisons: list[list[TaskDelta]], alpha: float = 0.05) -> str:
    """Per candidate against the first run: a table of deltas, then the flipped samples per task."""
    lines = [f"# harness compare: {names[0]} vs {', '.join(names[1:])}", ""]
    for name, deltas in zip(names[1:], comparisons):
        lines += [
            f"## {name} against {names[0]}",
            "",
            "| task | metric | A | B | Δ (B − A) | 95 % CI of Δ | p | test | flips A→B (right→wrong / wrong→right) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for d in deltas:
            shown = f"**{d.delta:+.4f}**" if d.significant(alpha) else f"{d.delta:+.4f}"
            flips = f"{d.test.a_only} / {d.test.b_only}" if d.test.a_only is not None else "–"
            lines.append(
                f"| {md_cell(d.task)} | {d.metric} | {d.a:.4f} | {d.b:.4f} | {shown} "
                f"| [{d.test.ci95[0]:+.4f}, {d.test.ci95[1]:+.4f}] | {d.test.p_value:.3g} | {d.test.test} | {flips} |"
            )
        lines.append("")
        lines.append(
            f"Bold: significant at {alpha}. Paired samples per task: "
            + ", ".join(f"{md_cell(d.task)}{_worst_suffix(d.metric)} {d.test.n}" for d in deltas)
            + "."
        )
        lines.append("")
        for d in deltas:
            if not d.flips:
                continue
            lines += [
                f"### {md_cell(d.task)}: {len(d.flips)} flipped samples",
                "",
                "| doc | target | A output | B output | A | B |",
                "|---|---|---|---|---|---|",
            ]
            for f in d.flips[:MAX_LISTED]:
                lines.append(
                    f"| {md_cell(f['id'])} | {md_cell(f['target'])} | {md_cell(f['a_output'])} | {md_cell(f['b_output'])} "
                    f"| {f['a_score']:g} | {f['b_score']:g} |"
                )
            if len(d.flips) > MAX_LISTED:
                lines.append(f"| … {len(d.flips) - MAX_LISTED} more in the HTML report | | | | | |")
            lines.append("")
    return "\n".join(lines)


def _worst_suffix(metric: str) -> str:
    """` (acc_worst_robustness)` for a worst-case row, so a task's rows are told apart."""
    return f" ({metric.split(' → ')[-1]})" if " → " in metric else ""


def md_cell(value: Any, limit: int = 120) -> str:
    """Text for a markdown table cell: one line, pipes escaped, HTML special characters as entities."""
    text = " ".join(str(value).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(raw, entity)
    return text


def run_titles(records: list[RunRecord]) -> list[str]:
    """What a page calls each run: its model and variant (`smollm2-135m (5-shot)`); runs that share
    one get their run id beside it."""
    labels = [r.label for r in records]
    return [f"{label} · {r.run_id}" if labels.count(label) > 1 else label for label, r in zip(labels, records)]


def render_comparison(
    names: list[str],
    comparisons: list[list[TaskDelta]],
    out: str | Path,
    alpha: float = 0.05,
    titles: list[str] | None = None,
) -> Path:
    """The comparison as one self-contained HTML page, titled by `titles` (run_titles: model and
    variant), else by `names`; the run ids stay in the page."""
    from harness.reports.html import render_page

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    titles = titles or names
    data = [
        {
            "name": title,
            "run": name,
            "tasks": [
                {
                    "task": d.task,
                    "metric": d.metric,
                    "a": d.a,
                    "b": d.b,
                    "delta": d.delta,
                    "ci": list(d.test.ci95),
                    "p": d.test.p_value,
                    "test": d.test.test,
                    "n": d.test.n,
                    "significant": d.significant(alpha),
                    "flips": d.flips,
                    "outputs": d.outputs,
                }
                for d in deltas
            ],
        }
        for name, title, deltas in zip(names[1:], titles[1:], comparisons)
    ]
    page = render_page(
        "compare.html.j2",
        ("report.css", "compare.js"),
        title=f"{titles[0]} vs {', '.join(titles[1:])}",
        reference=titles[0],
        reference_run=names[0],
        data=data,
        alpha=alpha,
    )
    out.write_text(page, encoding="utf-8")
    return out
