"""Each task's share of a runner's work: requests, tokens, model time, latency.

lm-eval hands a runner all requests of one kind at once, every task mixed. While a `TaskMeter` is
installed, each such call is split by the requests' task and made once per task, with the runner's
`WorkStats` and a clock read around each, so the figures of a task are its own (exact, for any
runner behind the seam) rather than a share estimated from a mixed batch. The price: a task's
requests no longer share a batch with another task's (tasks rarely share prompts, and every result
is cached by request, not by batch). Except where the runner names a kind in `tasks_share_batches`
(the transformers runner's generation: one batch of every task's rows fills better than each
task's alone): such a call goes through whole and the runner writes each task's share of its work
to the TaskWork objects the meter hands it (`runner.task_work`; see models/generating.py).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.models.runner import Latency, Runner, RunnerReport

METERED = ("loglikelihood", "loglikelihood_rolling", "generate_until")


@dataclass
class TaskWork:
    """A task's requests and the runner's work on them, summed over the calls lm-eval made."""

    requests: int = 0
    requests_computed: int = 0
    requests_from_cache: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    tokens_computed: int = 0
    model_seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    def add(self, requests: int, before: RunnerReport, after: RunnerReport, seconds: float) -> None:
        a, b = before.work, after.work
        self.requests += requests
        self.requests_computed += b.requests_computed - a.requests_computed
        self.requests_from_cache += b.requests_from_cache - a.requests_from_cache
        prompt, generated = b.prompt_tokens - a.prompt_tokens, b.generated_tokens - a.generated_tokens
        billed = _usage_delta(before, after)
        if billed is not None and not (prompt or generated):  # a served runner: the server's own count
            prompt, generated = billed
        self.prompt_tokens += prompt
        self.generated_tokens += generated
        self.tokens_computed += b.tokens_computed - a.tokens_computed
        self.model_seconds += seconds
        self.latencies_s += after.latencies_s[len(before.latencies_s) :]

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        """p50 and p95 of the requests' latencies, as env.json's run-wide `Latency` takes them (nearest
        rank); none measured: None."""
        latency = Latency.of(self.latencies_s)
        return (latency.p50_s, latency.p95_s) if latency is not None else (None, None)


def _usage_delta(before: RunnerReport, after: RunnerReport) -> tuple[int, int] | None:
    """Prompt and completion tokens a server billed between two reports, where the runner reports
    its answers' `usage` (RunnerReport.usage of the served runner); else None."""
    a, b = getattr(before, "usage", None), getattr(after, "usage", None)
    if b is None:
        return None
    return (
        b.prompt_tokens - (a.prompt_tokens if a is not None else 0),
        b.completion_tokens - (a.completion_tokens if a is not None else 0),
    )


class TaskMeter:
    """Installed on a runner (a context manager), measures every task's requests apart."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.tasks: dict[str, TaskWork] = defaultdict(TaskWork)

    def __enter__(self) -> TaskMeter:
        shared = getattr(self.runner, "tasks_share_batches", ())
        for name in METERED:
            method = getattr(self.runner, name)
            setattr(self.runner, name, self._whole(method) if name in shared else self._metered(method))
        if shared:
            self.runner.task_work = self.tasks  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: Any) -> None:
        for name in METERED:  # the instance attributes go; the class's methods show again
            self.runner.__dict__.pop(name, None)
        if getattr(self.runner, "tasks_share_batches", ()):
            self.runner.task_work = None  # type: ignore[attr-defined]

    def _whole(self, method: Callable[..., list]) -> Callable[..., list]:
        def call(requests: list, disable_tqdm: bool = False) -> list:
            by_task = _by_task(requests)
            before = {task: self.tasks[task].model_seconds for task in by_task}
            started = time.perf_counter()
            answers = method(requests, disable_tqdm=disable_tqdm)  # the runner adds its work to task_work
            seconds = time.perf_counter() - started
            # the call's whole time (tokenising, lookups, sampling too) in the shares of the runner's
            # forward-pass time; by requests where it ran none
            shares = {task: self.tasks[task].model_seconds - before[task] for task in by_task}
            total = sum(shares.values())
            for task, members in by_task.items():
                work = self.tasks[task]
                work.requests += len(members)
                share = shares[task] / total if total > 0 else len(members) / len(requests)
                work.model_seconds = before[task] + seconds * share
            return answers

        return call

    def _metered(self, method: Callable[..., list]) -> Callable[..., list]:
        def call(requests: list, disable_tqdm: bool = False) -> list:
            by_task = _by_task(requests)
            results: list = [None] * len(requests)
            for task, members in by_task.items():
                before = self.runner.report()
                started = time.perf_counter()
                answers = method([requests[i] for i in members], disable_tqdm=disable_tqdm)
                seconds = time.perf_counter() - started
                self.tasks[task].add(len(members), before, self.runner.report(), seconds)
                for i, answer in zip(members, answers, strict=True):
                    results[i] = answer
            return results

        return call


def _by_task(requests: list) -> dict[str, list[int]]:
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, request in enumerate(requests):
        by_task[str(getattr(request, "task_name", None))].append(i)
    return by_task
