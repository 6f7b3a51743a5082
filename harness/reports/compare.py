"""Runs side by side: per-task deltas with paired significance tests, flipped samples, outputs.

Samples are paired by document (lm-eval's doc_hash, so a changed document is not paired). For a
metric that is 0 or 1 per sample (acc, exact_match) the test is McNemar's exact test and the flips
are the documents one run got right and the other wrong; for other per-sample scores it is the
paired bootstrap; for corpus-level metrics without per-sample scores (BLEU), a z-test on the two
standard errors, unpaired and so conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.reports.leaderboard import sample_view
from harness.scorers.paired import PairedTest, compare_paired, unpaired_z
from harness.scorers.results import is_score
from harness.store import RESULTS, RunStore, read_json, read_samples

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


def find_run(ref: str, runs_dir: str | Path) -> Path:
    """A run folder given as a path, or as a run id (or unique prefix) in the store."""
    path = Path(ref)
    if (path / RESULTS).is_file():
        return path
    matches = [p for p in RunStore(runs_dir).runs() if p.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"run '{ref}' not found: give a run folder or a run id from `harness runs --runs {runs_dir}`")
    raise UserError(f"run '{ref}' is ambiguous in {runs_dir}: {', '.join(p.name for p in matches[:5])}")


def main_metrics(results: dict[str, Any]) -> dict[str, tuple[str, str, float, float | None, bool]]:
    """Per task (leaf tasks and groups): metric, filter, value, stderr, higher is better."""
    out = {}
    for task, metrics in {**results.get("results", {}), **results.get("groups", {})}.items():
        main = next(((k, v) for k, v in metrics.items() if is_score(k, v)), None)
        if main is None:
            continue
        metric, filt = main[0].split(",", 1)
        se = metrics.get(f"{metric}_stderr,{filt}")
        se = float(se) if isinstance(se, (int, float)) and math.isfinite(se) else None
        higher = bool(results.get("higher_is_better", {}).get(task, {}).get(metric, True))
        out[task] = (metric, filt, float(main[1]), se, higher)
    return out


def per_sample(samples: list[dict[str, Any]], task: str, metric: str, filt: str) -> dict[str, dict[str, Any]]:
    """doc key -> the sample row of task under the filter, for rows whose metric is a number."""
    rows = {}
    for s in samples:
        if s.get("task") == task and s.get("filter", "none") == filt and isinstance(s.get(metric), (int, float)):
            rows[f"{s.get('doc_id')}:{s.get('doc_hash', '')}"] = s
    return rows


def compare_runs(a_dir: Path, b_dir: Path, seed: int = 1234) -> list[TaskDelta]:
    """Per task the two runs share: the main metric of each, a paired test, flips and differing outputs."""
    ra, rb = main_metrics(read_json(a_dir, RESULTS)), main_metrics(read_json(b_dir, RESULTS))
    common = [t for t in ra if t in rb and ra[t][:2] == rb[t][:2]]
    if not common:
        raise UserError(f"runs {a_dir.name} and {b_dir.name} share no task scored with the same metric")
    sa, sb = _samples(a_dir), _samples(b_dir)
    deltas = []
    for task in sorted(common):
        metric, filt, va, se_a, higher = ra[task]
        vb, se_b = rb[task][2], rb[task][3]
        rows_a, rows_b = per_sample(sa, task, metric, filt), per_sample(sb, task, metric, filt)
        paired = sorted(set(rows_a) & set(rows_b), key=_doc_order)
        if paired:
            test = compare_paired([rows_a[k][metric] for k in paired], [rows_b[k][metric] for k in paired], seed=seed)
        else:  # a group, or a corpus-level metric: no per-sample scores to pair
            ci, p = unpaired_z(va, se_a, vb, se_b)
            test = PairedTest("z-test (unpaired)", vb - va, ci, p, 0)
        delta = TaskDelta(task, metric, filt, higher, va, vb, test)
        for key in paired:
            view_a, view_b = sample_view(rows_a[key]), sample_view(rows_b[key])
            side = {"id": view_a["id"], "prompt": view_a["prompt"], "target": view_a["target"],
                    "a_output": view_a["output"], "b_output": view_b["output"],
                    "a_score": rows_a[key][metric], "b_score": rows_b[key][metric]}
            if test.test == "mcnemar" and rows_a[key][metric] != rows_b[key][metric]:
                delta.flips.append(side)
            if view_a["output"] != view_b["output"]:
                delta.outputs.append(side)
        deltas.append(delta)
    return deltas


def _doc_order(key: str) -> tuple:
    doc_id = key.split(":", 1)[0]
    return (0, int(doc_id), key) if doc_id.isdigit() else (1, 0, key)


def _samples(run_dir: Path) -> list[dict[str, Any]]:
    try:
        return read_samples(run_dir)
    except OSError:
        return []  # compared on summary scores alone


def comparison_markdown(names: list[str], comparisons: list[list[TaskDelta]], alpha: float = 0.05) -> str:
    """Per candidate against the first run: a table of deltas, then the flipped samples per task."""
    lines = [f"# harness compare: {names[0]} vs {', '.join(names[1:])}", ""]
    for name, deltas in zip(names[1:], comparisons):
        lines += [f"## {name} against {names[0]}", "",
                  "| task | metric | A | B | Δ (B − A) | 95 % CI of Δ | p | test | flips A→B (right→wrong / wrong→right) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for d in deltas:
            shown = f"**{d.delta:+.4f}**" if d.significant(alpha) else f"{d.delta:+.4f}"
            flips = f"{d.test.a_only} / {d.test.b_only}" if d.test.a_only is not None else "–"
            lines.append(f"| {md_cell(d.task)} | {d.metric} | {d.a:.4f} | {d.b:.4f} | {shown} "
                         f"| [{d.test.ci95[0]:+.4f}, {d.test.ci95[1]:+.4f}] | {d.test.p_value:.3g} | {d.test.test} | {flips} |")
        lines.append("")
        lines.append(f"Bold: significant at {alpha}. Paired samples per task: "
                     + ", ".join(f"{md_cell(d.task)} {d.test.n}" for d in deltas) + ".")
        lines.append("")
        for d in deltas:
            if not d.flips:
                continue
            lines += [f"### {md_cell(d.task)}: {len(d.flips)} flipped samples", "",
                      "| doc | target | A output | B output | A | B |", "|---|---|---|---|---|---|"]
            for f in d.flips[:MAX_LISTED]:
                lines.append(f"| {md_cell(f['id'])} | {md_cell(f['target'])} | {md_cell(f['a_output'])} | {md_cell(f['b_output'])} "
                             f"| {f['a_score']:g} | {f['b_score']:g} |")
            if len(d.flips) > MAX_LISTED:
                lines.append(f"| … {len(d.flips) - MAX_LISTED} more in the HTML report | | | | | |")
            lines.append("")
    return "\n".join(lines)


def md_cell(value: Any, limit: int = 120) -> str:
    """Text for a markdown table cell: one line, pipes escaped, HTML special characters as entities."""
    text = " ".join(str(value).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(raw, entity)
    return text


def render_comparison(names: list[str], comparisons: list[list[TaskDelta]], out: str | Path, alpha: float = 0.05) -> Path:
    """The comparison as one self-contained HTML page."""
    from harness.reports.html import render_page

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = [{"name": name, "tasks": [{"task": d.task, "metric": d.metric, "a": d.a, "b": d.b, "delta": d.delta,
                                      "ci": list(d.test.ci95), "p": d.test.p_value, "test": d.test.test,
                                      "n": d.test.n, "significant": d.significant(alpha),
                                      "flips": d.flips, "outputs": d.outputs} for d in deltas]}
            for name, deltas in zip(names[1:], comparisons)]
    page = render_page("compare.html.j2", ("report.css", "compare.js"), title=f"{names[0]} vs {', '.join(names[1:])}",
                       reference=names[0], data=data, alpha=alpha)
    out.write_text(page, encoding="utf-8")
    return out
