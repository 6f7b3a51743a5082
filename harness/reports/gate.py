"""The CI gate: a candidate run against a baseline (a run, or a small JSON kept in the user's repo).

A task regresses when its main metric drops by more than the allowed amount (--max-drop, global or
per task; a drop is a rise for lower-is-better metrics) AND the drop is significant at the chosen
level. With per-sample scores on both sides (a run, or a baseline written with them) the test is
paired (McNemar for 0/1 scores, else the paired bootstrap); with summary scores only, a z-test on
the two standard errors. The verdict is written as markdown (GitHub's step summary) and JUnit XML.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from harness.errors import UserError
from harness.record import RunRecord, TaskScore, compare_scores, scored_samples
from harness.scorers.paired import PairedTest
from harness.store import as_record

BASELINE_FORMAT = 1


@dataclass
class TaskVerdict:
    task: str
    metric: str
    higher_is_better: bool
    baseline: float
    candidate: float
    test: PairedTest
    max_drop: float
    alpha: float

    @property
    def drop(self) -> float:
        """How much worse the candidate is (positive: worse), in the metric's units."""
        return (self.baseline - self.candidate) if self.higher_is_better else (self.candidate - self.baseline)

    @property
    def regressed(self) -> bool:
        return self.drop > self.max_drop and self.test.p_value < self.alpha


@dataclass
class GateResult:
    verdicts: list[TaskVerdict]
    missing: list[str]  # baseline tasks the candidate did not run

    @property
    def passed(self) -> bool:
        return not any(v.regressed for v in self.verdicts) and not self.missing


def parse_max_drops(values) -> tuple[float, dict[str, float]]:
    """`--max-drop` values: a number (every task) or TASK=NUMBER."""
    default, per_task = 0.0, {}
    for value in values:
        task, _, number = value.rpartition("=")
        try:
            drop = float(number)
        except ValueError:
            raise UserError(f"--max-drop '{value}': expected a number or TASK=NUMBER") from None
        if drop < 0:
            raise UserError(f"--max-drop '{value}': a drop is 0 or more")
        if task:
            per_task[task] = drop
        else:
            default = drop
    return default, per_task


def baseline_of(
    run: RunRecord | str | os.PathLike, with_samples: bool = True, metric: str | None = None
) -> dict[str, Any]:
    """A run's scores as a baseline: per task its main metric (or `metric`, e.g. a worst-case score
    `acc_worst_robustness`, under the main score's filter; tasks without it are left out), value,
    stderr and (optionally) per-doc scores."""
    record = as_record(run)
    samples = record.samples() if with_samples else []
    tasks = {}
    for task, main in record.main_scores().items():
        score = main if metric is None else record.tasks[task].score_of(metric, main.filter)
        if score is not None:
            tasks[task] = _entry(score, samples)
    return {
        "harness_baseline": BASELINE_FORMAT,
        "run_id": record.run_id,
        "spec_sha256": record.spec_sha256,
        "model": {k: record.model.get(k) for k in ("name", "sha256", "dtype")},
        "tasks": tasks,
    }


def _entry(score: TaskScore, samples: list) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "metric": score.metric,
        "filter": score.filter,
        "value": score.value,
        "stderr": score.stderr,
        "higher_is_better": score.higher_is_better,
        "n": score.n,
    }
    rows = scored_samples(samples, score)
    if rows:
        entry["scores"] = {key: row.row[score.metric] for key, row in sorted(rows.items())}
    return entry


def _score(task: str, entry: dict[str, Any]) -> TaskScore:
    """A baseline entry as the score it records."""
    return TaskScore(
        task,
        entry["metric"],
        entry.get("filter", "none"),
        entry["value"],
        entry.get("stderr"),
        None,
        None,
        entry.get("higher_is_better", True),
        entry.get("n"),
    )


def write_baseline(
    run: RunRecord | str | os.PathLike, out: Path, with_samples: bool = True, metric: str | None = None
) -> dict[str, Any]:
    """Write baseline_of(run) as the JSON a user commits for `harness check`."""
    baseline = baseline_of(run, with_samples, metric)
    if metric and not baseline["tasks"]:
        raise UserError(f"run {baseline['run_id']} has no task scored with {metric}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return baseline


def load_baseline(ref: Path, metric: str | None = None) -> dict[str, Any]:
    """A baseline JSON file, or a run folder read as one (in memory; on `metric` if given)."""
    if ref.is_dir():
        baseline = baseline_of(ref, metric=metric)
        if metric and not baseline["tasks"]:
            raise UserError(f"baseline run {ref.name} has no task scored with {metric}")
        return baseline
    try:
        baseline = json.loads(ref.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(
            f"baseline {ref} is unreadable ({exc}): give a run folder or a file from `harness baseline`"
        ) from exc
    if not isinstance(baseline, dict) or baseline.get("harness_baseline") != BASELINE_FORMAT:
        raise UserError(f"baseline {ref} is not a harness baseline (write one with `harness baseline RUN --out FILE`)")
    if metric:
        baseline = {**baseline, "tasks": {t: e for t, e in baseline["tasks"].items() if e.get("metric") == metric}}
        if not baseline["tasks"]:
            raise UserError(
                f"baseline {ref} holds no task scored with {metric} (`harness baseline RUN --metric {metric}`)"
            )
    return baseline


def check(
    candidate_run: RunRecord | str | os.PathLike,
    baseline: dict[str, Any],
    max_drop: float,
    task_max_drop: dict[str, float],
    alpha: float,
    seed: int = 1234,
) -> GateResult:
    """Verdict per baseline task present in the candidate."""
    record = as_record(candidate_run)
    samples = record.samples()
    unknown = sorted(set(task_max_drop) - set(baseline["tasks"]))
    if unknown:
        raise UserError(f"--max-drop names tasks the baseline does not have: {', '.join(unknown)}")
    verdicts, missing = [], []
    for task, base in sorted(baseline["tasks"].items()):
        # the candidate is scored on the baseline's metric (its main one, or e.g. a worst case)
        score = (
            record.tasks[task].score_of(base["metric"], base.get("filter", "none")) if task in record.tasks else None
        )
        if score is None:
            missing.append(task)
            continue
        cand = _entry(score, samples)
        # documents in key order (a baseline file's order), not doc_order: the bootstrap draws depend on it
        test = compare_scores(
            _score(task, base),
            _score(task, cand),
            base.get("scores", {}),
            cand.get("scores", {}),
            order=None,
            seed=seed,
        )
        verdicts.append(
            TaskVerdict(
                task,
                base["metric"],
                base.get("higher_is_better", True),
                base["value"],
                cand["value"],
                test,
                task_max_drop.get(task, max_drop),
                alpha,
            )
        )
    return GateResult(verdicts, missing)


def gate_markdown(result: GateResult, candidate: str, baseline: str) -> str:
    """A summary for the CI log / GitHub step summary: verdict, per-task table, and why it failed."""
    bad = [v for v in result.verdicts if v.regressed]
    head = "PASS" if result.passed else "FAIL"
    lines = [
        f"## harness check: {head}",
        "",
        f"Candidate `{candidate}` against baseline `{baseline}`: "
        f"{len(bad)} of {len(result.verdicts)} tasks regressed"
        + (f", {len(result.missing)} missing" if result.missing else "")
        + ".",
        "",
        "| task | metric | baseline | candidate | Δ | 95 % CI of Δ | p | test | allowed drop | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in result.verdicts:
        verdict = (
            "**regression**"
            if v.regressed
            else (
                "worse, within threshold"
                if v.drop > 0 and v.drop <= v.max_drop
                else "worse, not significant"
                if v.drop > v.max_drop
                else "ok"
            )
        )
        lines.append(
            f"| {v.task} | {v.metric} {'↑' if v.higher_is_better else '↓'} | {v.baseline:.4f} | {v.candidate:.4f} "
            f"| {v.candidate - v.baseline:+.4f} | [{v.test.ci95[0]:+.4f}, {v.test.ci95[1]:+.4f}] "
            f"| {v.test.p_value:.3g} | {v.test.test} | {v.max_drop:g} | {verdict} |"
        )
    for task in result.missing:
        lines.append(f"| {task} | | | | | | | | | **missing from the candidate** |")
    if bad or result.missing:
        lines += ["", "Why:"]
        for v in bad:
            lines.append(f"- {reason(v)}")
        for task in result.missing:
            lines.append(f"- {task}: in the baseline, not in the candidate run (or scored with another metric)")
    return "\n".join(lines) + "\n"


def reason(v: TaskVerdict) -> str:
    return (
        f"{v.task}: {v.metric} {'fell' if v.higher_is_better else 'rose'} by {v.drop:.4f} "
        f"({v.baseline:.4f} → {v.candidate:.4f}; 95 % CI of Δ [{v.test.ci95[0]:+.4f}, {v.test.ci95[1]:+.4f}]), "
        f"more than the allowed {v.max_drop:g}, and {v.test.test} p = {v.test.p_value:.3g} < {v.alpha:g}"
    )


def gate_junit(result: GateResult) -> str:
    """JUnit XML: one test case per task, a failure for each regression or missing task."""
    suite = ElementTree.Element(
        "testsuite",
        name="harness check",
        tests=str(len(result.verdicts) + len(result.missing)),
        failures=str(sum(v.regressed for v in result.verdicts) + len(result.missing)),
    )
    for v in result.verdicts:
        case = ElementTree.SubElement(suite, "testcase", classname="harness.check", name=v.task)
        if v.regressed:
            ElementTree.SubElement(case, "failure", message=reason(v)).text = reason(v)
    for task in result.missing:
        case = ElementTree.SubElement(suite, "testcase", classname="harness.check", name=task)
        ElementTree.SubElement(case, "failure", message="missing from the candidate run")
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)
