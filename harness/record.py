"""The run record, typed: a stored run's spec, model identity, environment, per-task scores and samples.

On disk a run is lm-eval's results dict plus three files (see harness.store, which alone reads and
writes run folders); here it is a `RunRecord` whose tasks hold `TaskScore`s. What "the main score of
a task" is (its first metric, as lm-eval lists its metric_list, with a finite stderr or none) and how
two scores are compared (paired where per-document scores exist, else unpaired) are said once, here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.efficiency import EFFICIENCY_COLUMNS, Efficiency, efficiency_values, total
from harness.samples import Sample
from harness.scorers.keys import is_score, split_key, stderr_key

if TYPE_CHECKING:
    import pandas as pd

    from harness.scorers.paired import PairedTest

# what makes a leaderboard row (a --limit does not: each cell shows how many samples it scored)
VARIANT_SETTINGS = (
    "num_fewshot",
    "apply_chat_template",
    "system_instruction",
    "gen_kwargs",
    "seed",
    "adapter",
    "rag",
    "strategy",
)


# ---------------------------------------------------------------------------------- result keys
# is_score, split_key and stderr_key: harness.scorers.keys (the scorers write the keys the record reads)
def finite(value: Any) -> float | None:
    """A number that is finite, as a float; anything else (N/A, NaN, infinity) is None."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@dataclass(frozen=True)
class TaskScore:
    """One score of a task (or group): value, standard error, 95 % interval, signature."""

    task: str
    metric: str
    filter: str
    value: float
    stderr: float | None  # finite, or None
    ci95: tuple[float, float] | None
    signature: str | None
    higher_is_better: bool
    n: int | None  # documents scored (None for a group)

    @property
    def key(self) -> str:
        return f"{self.metric},{self.filter}"

    @property
    def label(self) -> str:
        """The metric as tables show it: `acc`, or `exact_match (first_number)` under a filter."""
        return self.metric if self.filter == "none" else f"{self.metric} ({self.filter})"


@dataclass(frozen=True)
class TaskRecord:
    """A task or group of a run: its scores in lm-eval's order (the first is the main score)."""

    name: str
    scores: tuple[TaskScore, ...]
    group: bool  # in lm-eval's `groups`
    members: tuple[str, ...]  # a group's tasks (lm-eval's group_subtasks)
    num_fewshot: int | None
    n: int | None
    efficiency: Efficiency | None = None  # a group's: its members' summed; runs stored before it: None

    @property
    def main(self) -> TaskScore | None:
        return main_score(self.scores)

    def score(self, metric: str) -> TaskScore | None:
        """The first score of this metric (any filter)."""
        return next((s for s in self.scores if s.metric == metric), None)

    def score_of(self, metric: str, filt: str) -> TaskScore | None:
        """The score of this metric under this filter."""
        return next((s for s in self.scores if s.metric == metric and s.filter == filt), None)


def main_score(scores: Iterable[TaskScore]) -> TaskScore | None:
    """The main score of a task: its first (lm-eval keeps the task's metric_list order)."""
    return next(iter(scores), None)


def task_records(
    results: Mapping[str, Any], efficiency: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, TaskRecord]:
    """Every task and group of lm-eval's results dict (a group's own entry wins), in results order;
    `efficiency`: env.json's per-task figures, where the run has them."""
    groups = results.get("groups", {})
    subtasks = results.get("group_subtasks", {})
    costs = {name: e for name, raw in (efficiency or {}).items() if (e := Efficiency.from_dict(raw)) is not None}
    merged = {**results.get("results", {}), **groups}
    n_samples = results.get("n-samples", {})
    records = {}
    for task, metrics in merged.items():
        n = n_samples.get(task, {}).get("effective")
        scores = []
        for key, value in metrics.items():
            if not is_score(key, value):
                continue
            metric, filt = split_key(key)
            ci = results.get("ci95", {}).get(task, {}).get(key)
            scores.append(
                TaskScore(
                    task,
                    metric,
                    filt,
                    float(value),
                    finite(metrics.get(stderr_key(metric, filt))),
                    (float(ci[0]), float(ci[1])) if ci else None,
                    results.get("signatures", {}).get(task, {}).get(key),
                    bool(results.get("higher_is_better", {}).get(task, {}).get(metric, True)),
                    n,
                )
            )
        records[task] = TaskRecord(
            task,
            tuple(scores),
            task in groups,
            tuple(subtasks.get(task, [])),
            results.get("n-shot", {}).get(task),
            n,
            costs.get(task) or total(costs[leaf] for leaf in _leaves(task, subtasks) if leaf in costs),
        )
    return records


def _leaves(task: str, subtasks: Mapping[str, Any]) -> list[str]:
    """A group's leaf tasks (subgroups expanded); a task is its own leaf."""
    members = subtasks.get(task) or []
    return [leaf for m in members for leaf in _leaves(m, subtasks)] if members else [task]


# ---------------------------------------------------------------------------------- samples
# Sample, SampleView, sample_view: harness.samples
def scored_samples(samples: Iterable[Sample], score: TaskScore) -> dict[str, Sample]:
    """Document key -> the sample of score's task under its filter, where the metric is a number per sample."""
    return {
        s.key: s
        for s in samples
        if s.task == score.task and s.filter == score.filter and s.score(score.metric) is not None
    }


# ---------------------------------------------------------------------------------- the run
@dataclass
class RunRecord:
    """A stored run: lm-eval's results dict as written, the spec and environment records, and its samples."""

    run_id: str
    folder: Path | None
    results: Mapping[str, Any]
    spec: Mapping[str, Any]
    env: Mapping[str, Any]
    sample_reader: Callable[[], Iterable[Mapping[str, Any]]] | None = field(default=None, repr=False, compare=False)
    _samples: list[Sample] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def model(self) -> Mapping[str, Any]:
        """The model's identity (name, sha256 of the weights, dtype, device, adapter)."""
        return self.results.get("harness", {}).get("model", {})

    @property
    def contamination(self) -> dict[str, Mapping[str, Any]]:
        """Per task, the contamination report the run carries: the overlap of its adapter's training
        data with the task's evaluated split (`harness finetune --task` writes it into the card, `harness
        run --adapter` records it). Reports (leaderboard, ladder) mark the task's score with it."""
        adapter = self.model.get("adapter") or {}
        overlap = adapter.get("contamination")
        return {str(overlap["task"]): overlap} if isinstance(overlap, Mapping) and overlap.get("task") else {}

    @property
    def spec_sha256(self) -> str | None:
        return self.results.get("harness", {}).get("spec_sha256")

    @property
    def created(self) -> str | None:
        return self.env.get("started")

    @property
    def settings(self) -> Mapping[str, Any]:
        """The run spec as given (tasks, shots, limit, seeds...)."""
        return self.spec.get("spec", {})

    @functools.cached_property
    def tasks(self) -> dict[str, TaskRecord]:
        return task_records(self.results, (self.env.get("efficiency") or {}).get("tasks"))

    @property
    def efficiency(self) -> Efficiency | None:
        """The run's requests, tokens and model time in all (None for runs stored before harness kept them)."""
        return Efficiency.from_dict((self.env.get("efficiency") or {}).get("run"))

    def main_score(self, task: str) -> TaskScore | None:
        record = self.tasks.get(task)
        return record.main if record is not None else None

    def main_scores(self) -> dict[str, TaskScore]:
        """Per task and group with a score, its main score."""
        return {name: t.main for name, t in self.tasks.items() if t.main is not None}

    def samples(self) -> list[Sample]:
        """The stored samples (read once, then kept); none for a run stored without them (or whose
        file cannot be read)."""
        if self._samples is None:
            self._samples = self.read_samples()
        return self._samples

    def read_samples(self) -> list[Sample]:
        """The stored samples, read again and not kept (for reports over many runs)."""
        try:
            return [Sample(row) for row in self.sample_reader()] if self.sample_reader else []
        except OSError:
            return []

    @functools.cached_property
    def variant(self) -> dict[str, Any]:
        return run_variant(self.settings, self.model)

    @property
    def label(self) -> str:
        return variant_label(self.model.get("name") or self.run_id, self.variant)


def run_variant(settings: Mapping[str, Any], identity: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that change numbers (shots, chat template, generation, seed, adapter, dtype)."""
    variant = {k: settings[k] for k in VARIANT_SETTINGS if _set(settings.get(k))}
    adapter = identity.get("adapter")
    if adapter:  # the adapter's content, not its path, makes the variant; the label shows its name
        variant["adapter"] = {
            "name": adapter.get("name", "adapter") + (" merged" if adapter.get("merged") else ""),
            "sha256": adapter.get("sha256"),
        }
    else:
        variant.pop("adapter", None)
    if identity.get("dtype") not in (None, "float32"):  # the dtype used, whether asked for or by default
        variant["dtype"] = identity["dtype"]
    return variant


def _set(value: Any) -> bool:
    """A setting given a value (0 shots is one; None, False and empty are not)."""
    return value is not None and value is not False and value != {} and value != []


def variant_parts(variant: Mapping[str, Any]) -> list[str]:
    """What makes a variant differ from the model's defaults: 5-shot, chat, adapter ..."""
    parts = []
    if "num_fewshot" in variant:
        parts.append(f"{variant['num_fewshot']}-shot")
    if variant.get("apply_chat_template"):
        parts.append("chat")
    if "system_instruction" in variant:
        parts.append("system prompt")
    if "gen_kwargs" in variant:
        parts.append(",".join(f"{k}={v}" for k, v in sorted(variant["gen_kwargs"].items())))
    for key in ("adapter", "rag", "strategy"):
        if key in variant:
            parts.append(str(variant[key] if not isinstance(variant[key], dict) else variant[key].get("name", key)))
    if "dtype" in variant:
        parts.append(variant["dtype"])
    if "seed" in variant:
        parts.append(f"seed {variant['seed']}")
    return parts


def variant_label(model: str, variant: Mapping[str, Any]) -> str:
    """The model name, plus what makes this variant differ from the model's defaults."""
    parts = variant_parts(variant)
    return model + (f" ({'; '.join(parts)})" if parts else "")


# ---------------------------------------------------------------------------------- two scores
def doc_order(key: str) -> tuple:
    """Documents in id order (numeric ids by number), whatever follows the id in the key."""
    doc_id = key.split(":", 1)[0]
    return (0, int(doc_id), key) if doc_id.isdigit() else (1, 0, key)


def compare_scores(
    a: TaskScore,
    b: TaskScore,
    a_docs: Mapping[str, float],
    b_docs: Mapping[str, float],
    *,
    order: Callable[[str], Any] | None = doc_order,
    seed: int = 1234,
) -> PairedTest:
    """b against a: paired over the documents both scored (McNemar for 0/1 scores, else the paired
    bootstrap), in `order`; without any, the unpaired z-test on the two standard errors."""
    from harness.scorers.paired import PairedTest, compare_paired, unpaired_z

    paired = sorted(set(a_docs) & set(b_docs), key=order)
    if paired:
        return compare_paired([a_docs[k] for k in paired], [b_docs[k] for k in paired], seed=seed)
    ci, p = unpaired_z(a.value, a.stderr, b.value, b.stderr)
    return PairedTest("z-test (unpaired)", b.value - a.value, ci, p, 0)


# ---------------------------------------------------------------------------------- a frame
FRAME_COLUMNS = (
    "run_id",
    "created",
    "model",
    "model_sha256",
    "variant",
    "label",
    "spec_sha256",
    "task",
    "group",
    "main",
    "metric",
    "filter",
    "value",
    "stderr",
    "ci95_lo",
    "ci95_hi",
    "n",
    "higher_is_better",
    "signature",
)


def scores_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run x task x score (`main`: the task's main score), with the task's efficiency
    figures, for pandas."""
    import pandas as pd

    rows = []
    for r in records:
        variant = "; ".join(variant_parts(r.variant))
        for task in r.tasks.values():
            for s in task.scores:
                rows.append(
                    (
                        r.run_id,
                        r.created,
                        r.model.get("name"),
                        r.model.get("sha256"),
                        variant,
                        r.label,
                        r.spec_sha256,
                        task.name,
                        task.group,
                        s is task.main,
                        s.metric,
                        s.filter,
                        s.value,
                        s.stderr,
                        s.ci95[0] if s.ci95 else None,
                        s.ci95[1] if s.ci95 else None,
                        s.n,
                        s.higher_is_better,
                        s.signature,
                        *efficiency_values(task.efficiency),
                    )
                )
    return pd.DataFrame(rows, columns=[*FRAME_COLUMNS, *EFFICIENCY_COLUMNS])
