"""Scores on the clean subset: a run's per-task score on all its documents and on those a
contamination report (`harness contamination --json FLAGS.json`) did not flag, each with its 95 %
interval, and the difference clean - all with a bootstrap interval over the run's documents (both
means from the same resample: the difference is paired). Given two runs, B against A on the clean
documents alone, with the paired test of `harness compare`.

Documents are matched by lm-eval's doc_hash, which the flags file and the run's samples both hold.
Only per-document scores can be restricted (acc, exact match, ROUGE ...); a corpus metric (BLEU) is
listed as not restrictable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from harness.record import RunRecord, TaskScore, compare_scores, scored_samples
from harness.reports.compare import md_cell
from harness.scorers.bootstrap import Estimate, mean_estimate, resample_indices, summarise
from harness.scorers.paired import PairedTest
from harness.store import as_record

RESAMPLES = 10_000


@dataclass
class CleanScore:
    task: str
    metric: str
    n_all: int
    n_clean: int
    all: float | None
    all_ci: tuple[float, float] | None
    clean: float | None
    clean_ci: tuple[float, float] | None
    delta: float | None  # clean - all
    delta_ci: tuple[float, float] | None
    p_value: float | None
    versus: PairedTest | None = None  # B against A on the clean documents (two runs)
    note: str | None = None


def _per_doc(record: RunRecord, score: TaskScore) -> tuple[dict[str, float], dict[str, str]]:
    rows = scored_samples(record.samples(), score)
    return {k: float(s.row[score.metric]) for k, s in rows.items()}, {
        k: str(s.row.get("doc_hash")) for k, s in rows.items()
    }


def _delta(values: np.ndarray, clean: np.ndarray, seed: int) -> tuple[Estimate, float]:
    """Bootstrap of mean(clean docs) - mean(all docs) over resamples of the documents, and its p-value."""
    parts = []
    for idx in resample_indices(len(values), RESAMPLES, seed):
        v, c = values[idx], clean[idx]
        kept = c.sum(axis=1)
        parts.append(np.where(kept > 0, (v * c).sum(axis=1) / np.maximum(kept, 1), np.nan) - v.mean(axis=1))
    reps = np.concatenate(parts)
    finite = reps[np.isfinite(reps)]
    p = 2 * min((finite <= 0).mean(), (finite >= 0).mean()) if len(finite) else float("nan")
    return summarise(reps, RESAMPLES, seed), float(min(1.0, max(p, 1 / RESAMPLES)))


def clean_scores(
    run: RunRecord | str | os.PathLike,
    flags: dict[str, set[str]],
    baseline: RunRecord | str | os.PathLike | None = None,
    seed: int = 1234,
) -> list[CleanScore]:
    """Per task of the run with a main score: all documents against the unflagged ones; with a
    baseline (A), also this run (B) against it on the unflagged documents."""
    record = as_record(run)
    base = as_record(baseline) if baseline is not None else None
    out = []
    for task, score in record.main_scores().items():
        if record.tasks[task].group:
            continue
        flagged = flags.get(task, set())
        values, hashes = _per_doc(record, score)
        if not values:
            out.append(
                CleanScore(
                    task,
                    score.label,
                    score.n or 0,
                    0,
                    score.value,
                    score.ci95,
                    None,
                    None,
                    None,
                    None,
                    None,
                    note="no per-document scores (a corpus metric)",
                )
            )
            continue
        keys = sorted(values)
        v = np.array([values[k] for k in keys])
        c = np.array([hashes[k] not in flagged for k in keys])
        all_est, clean_vals = mean_estimate(v.tolist()), v[c]
        clean_est = mean_estimate(clean_vals.tolist())
        delta, p = _delta(v, c, seed) if c.any() and not c.all() else (Estimate(None, None, "bootstrap"), None)
        row = CleanScore(
            task,
            score.label,
            len(v),
            int(c.sum()),
            float(v.mean()),
            all_est.ci95,
            float(clean_vals.mean()) if len(clean_vals) else None,
            clean_est.ci95,
            float(clean_vals.mean() - v.mean()) if len(clean_vals) else None,
            delta.ci95,
            p if not c.all() else None,
        )
        if base is not None and task in base.main_scores():
            base_score = base.main_scores()[task]
            if (base_score.metric, base_score.filter) == (score.metric, score.filter):
                b_values, b_hashes = _per_doc(base, base_score)
                row.versus = compare_scores(
                    base_score,
                    score,
                    {k: x for k, x in b_values.items() if b_hashes[k] not in flagged},
                    {k: x for k, x in values.items() if hashes[k] not in flagged},
                    seed=seed,
                )
        out.append(row)
    return out


def _ci(ci: tuple[float, float] | None, signed: bool = False) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci and signed else f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "–"


def clean_markdown(run_id: str, rows: list[CleanScore], flags_path: str, baseline_id: str | None = None) -> str:
    """The all-vs-clean table (and, with a baseline, B - A on the clean documents)."""
    head = "| task | metric | n all | score (all) | 95 % CI | n clean | score (clean) | 95 % CI | Δ clean - all | 95 % CI of Δ | p |"
    extra = " Δ vs A (clean) | 95 % CI | p | test |" if baseline_id else ""
    lines = [
        f"# Clean-subset scores: {md_cell(run_id)}",
        "",
        f"Documents flagged in `{md_cell(flags_path)}` left out of the clean score"
        + (f"; A = {md_cell(baseline_id)}, compared on the clean documents." if baseline_id else "."),
        "",
        head + extra,
        "|---" * (11 + (4 if baseline_id else 0)) + "|",
    ]
    for r in rows:
        if r.note:
            lines.append(
                f"| {md_cell(r.task)} | {md_cell(r.metric)} | {r.n_all} | {r.all:.4f} | {_ci(r.all_ci)} | {r.note} |"
                + " |" * (6 + (4 if baseline_id else 0))
            )
            continue
        cells = [
            md_cell(r.task),
            md_cell(r.metric),
            str(r.n_all),
            f"{r.all:.4f}",
            _ci(r.all_ci),
            str(r.n_clean),
            f"{r.clean:.4f}" if r.clean is not None else "–",
            _ci(r.clean_ci),
            f"{r.delta:+.4f}" if r.delta is not None else "–",
            _ci(r.delta_ci, True),
            f"{r.p_value:.3g}" if r.p_value is not None else "–",
        ]
        if baseline_id:
            t = r.versus
            cells += [f"{t.delta:+.4f}", _ci(t.ci95, True), f"{t.p_value:.3g}", t.test] if t else ["–"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Δ clean - all: both means from the same bootstrap resample of the run's documents (10,000 resamples).",
    ]
    return "\n".join(lines) + "\n"
