"""The strategy ladder's report: per rung its score with a 95 % interval, what it cost, and its
difference from the first rung with a paired significance test (the same documents in every rung).

Rungs are paired by document id: every rung of a ladder evaluates the same split in the same order
(a retrieval rung changes the prompt, and with it lm-eval's doc hash, not the document). Pairs whose
targets differ are not paired; with none left the test falls back to the unpaired z-test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.reports.compare import main_metrics, md_cell
from harness.scorers.paired import PairedTest, compare_paired, unpaired_z
from harness.store import ENV, RESULTS, read_json, read_samples

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

    @property
    def ci95(self) -> tuple[float, float] | None:
        if self.value is None or self.stderr is None:
            return None
        return (self.value - Z95 * self.stderr, self.value + Z95 * self.stderr)


def ladder_rows(rungs: list[tuple[str, str, Path | None, str | None]], metric: str | None = None,
                seed: int = 1234) -> list[RungRow]:
    """rungs: (name, task, run folder or None, why skipped). The first rung run is the reference."""
    rows, reference = [], None
    for name, task, run_dir, skipped in rungs:
        if run_dir is None:
            rows.append(RungRow(name, task, None, skipped=skipped or "not run"))
            continue
        results = read_json(run_dir, RESULTS)
        mains = main_metrics(results)
        if task not in mains:
            raise UserError(f"run {run_dir.name} has no score for task '{task}'")
        main_metric, filt, value, se, _ = mains[task]
        if metric is not None and main_metric != metric:
            scores = results["results"][task]
            key = next((k for k in scores if k.split(",", 1)[0] == metric), None)
            if key is None:
                raise UserError(f"task '{task}' has no metric '{metric}' (it has {main_metric})")
            filt = key.split(",", 1)[1]
            value = float(scores[key])
            se_value = scores.get(f"{metric}_stderr,{filt}")
            se = float(se_value) if isinstance(se_value, (int, float)) and math.isfinite(se_value) else None
            main_metric = metric
        env = read_json(run_dir, ENV)
        runner = env.get("runner", {})
        per_doc = _per_doc(run_dir, task, main_metric, filt)
        retrieval = {k.split(",", 1)[0]: float(v) for k, v in results["results"][task].items()
                     if k.startswith(("recall@", "mrr@")) and "_stderr" not in k and isinstance(v, (int, float))}
        row = RungRow(name, task, run_dir.name, main_metric, value, se, len(per_doc) or None,
                      runner.get("tokens_computed"), runner.get("requests_from_cache"), env.get("seconds"),
                      retrieval or None)
        if reference is None:
            reference = (row, per_doc)
        else:
            row.test = _against(reference, row, per_doc, seed)
        rows.append(row)
    if reference is None:
        raise UserError("the ladder has no rung that ran")
    return rows


def _per_doc(run_dir: Path, task: str, metric: str, filt: str) -> dict[str, tuple[float, Any]]:
    """doc id -> (score, target) of task's samples under the filter."""
    try:
        samples = read_samples(run_dir)
    except OSError:
        return {}
    return {str(s.get("doc_id")): (float(s[metric]), s.get("target")) for s in samples
            if s.get("task") == task and s.get("filter", "none") == filt and isinstance(s.get(metric), (int, float))}


def _against(reference: tuple[RungRow, dict], row: RungRow, per_doc: dict, seed: int) -> PairedTest:
    ref_row, ref_docs = reference
    paired = sorted((k for k in set(ref_docs) & set(per_doc) if ref_docs[k][1] == per_doc[k][1]),
                    key=lambda k: (0, int(k)) if k.isdigit() else (1, k))
    if paired:
        return compare_paired([ref_docs[k][0] for k in paired], [per_doc[k][0] for k in paired], seed=seed)
    ci, p = unpaired_z(ref_row.value, ref_row.stderr, row.value, row.stderr)
    return PairedTest("z-test (unpaired)", row.value - ref_row.value, ci, p, 0)


def ladder_markdown(title: str, description: str, rows: list[RungRow], alpha: float = 0.05) -> str:
    """The ladder as a markdown table, first rung the reference."""
    ref = next(r for r in rows if r.run_id)
    lines = [f"# harness ladder: {md_cell(title)}", "", md_cell(description), "",
             f"| rung | task | {ref.metric} | 95 % CI | n | Δ vs {md_cell(ref.name)} | 95 % CI of Δ | p | test "
             "| retrieval | tokens computed | seconds | run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.run_id is None:
            lines.append(f"| {md_cell(r.name)} | {md_cell(r.task)} | skipped: {md_cell(r.skipped)} | | | | | | | | | | |")
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
        lines.append(f"| {md_cell(r.name)} | {md_cell(r.task)} | {r.value:.4f} | {ci} | {r.n or '–'} | {delta} | {dci} | {p} "
                     f"| {test} | {retrieval} | {r.tokens_computed if r.tokens_computed is not None else '–'}{cached} "
                     f"| {r.seconds if r.seconds is not None else '–'} | {r.run_id} |")
    lines += ["", f"Bold: the difference from {md_cell(ref.name)} is significant at {alpha} (McNemar's exact test for 0/1 "
              "scores, the paired bootstrap otherwise; samples paired by document)."]
    return "\n".join(lines) + "\n"


def render_ladder(title: str, description: str, rows: list[RungRow], out: str | Path, alpha: float = 0.05) -> Path:
    """The ladder as one self-contained HTML page: the table and a bar per rung with its interval."""
    from harness.reports.html import render_page

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ran = [r for r in rows if r.value is not None]
    top = max([(r.ci95 or (0, r.value))[1] for r in ran] + [1e-9])
    data = []
    for r in rows:
        entry = {"name": r.name, "task": r.task, "run_id": r.run_id, "skipped": r.skipped, "metric": r.metric,
                 "value": r.value, "ci": list(r.ci95) if r.ci95 else None, "n": r.n, "retrieval": r.retrieval,
                 "tokens": r.tokens_computed, "seconds": r.seconds, "from_cache": r.from_cache}
        if r.test is not None:
            entry.update(delta=r.test.delta, delta_ci=list(r.test.ci95), p=r.test.p_value, test=r.test.test,
                         significant=r.test.p_value < alpha)
        if r.value is not None:  # bar geometry, in percent of the widest interval's end
            lo, hi = r.ci95 or (r.value, r.value)
            entry["bar"] = {"value": 100 * r.value / top, "lo": 100 * max(lo, 0) / top, "hi": 100 * hi / top}
        data.append(entry)
    page = render_page("ladder.html.j2", ("report.css",), title=title, description=description, rows=data,
                       reference=ran[0].name, alpha=alpha)
    out.write_text(page, encoding="utf-8")
    return out
