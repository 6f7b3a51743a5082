"""A generate_until call's requests to compute, in groups: one per settings object (distinct
generation_kwargs), and per task too unless continuous batching runs the group, which holds every
task's preamble once and decodes the tasks' rows in one batch (continuous.py).

Each task's share of the work: lm-eval hands a runner every task's requests at once, and a
TaskMeter (metering.py) lets a generate_until call through whole to a runner that says so
(`tasks_share_batches`), which then writes each task's work to `task_work` itself: lookups, prompt,
generated and computed tokens exactly; the time of a forward pass that ran several tasks' rows split
among them by the tokens it computed for each (the meter then spreads the call's whole time in those
shares).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from harness.models.continuous import ContinuousDecoder, continuous_applies
from harness.models.decoding import GenerationJob
from harness.models.generation import GenerationSettings
from harness.models.metering import TaskWork
from harness.request_cache import ResultSink

Plan = list[tuple[GenerationSettings, tuple, "int | None"]]


def continuous(lm: Any, settings: GenerationSettings) -> bool:
    """Continuous batching runs a group unless the settings need model.generate, the model an
    attention it does not reproduce, or data parallel plans slices across processes."""
    return lm.parallel.size == 1 and lm.decoder.own_decoder_applies(settings) and continuous_applies(lm.model)


def looked_up(task_work: dict[str, TaskWork] | None, requests: list, todo: list[int]) -> None:
    """Each task's requests found in the request cache and those computed (todo)."""
    if task_work is None:
        return
    computed = {i for i in todo}
    for i, request in enumerate(requests):
        work = task_work[str(request.task_name)]
        if i in computed:
            work.requests_computed += 1
        else:
            work.requests_from_cache += 1


def generate(lm: Any, requests: list, plan: Plan, todo: list[int], sink: ResultSink, disable_tqdm: bool) -> list:
    """Generations for requests[i], i in todo (plan[i]: settings, prompt tokens, noise seed or None)."""
    results: dict[int, str] = {}
    task_work: dict[str, TaskWork] | None = lm.task_work
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i in todo:
        settings = plan[i][0]
        groups[(id(settings), None if continuous(lm, settings) else requests[i].task_name)].append(i)
        if task_work is not None:
            task_work[str(requests[i].task_name)].prompt_tokens += len(plan[i][1])
    lm.work.requests_read(sum(len(plan[i][1]) for i in todo))
    pbar = lm.parallel.progress(len(todo), disable_tqdm, "generate_until")
    for members in groups.values():
        settings = plan[members[0]][0]
        encoded = {i: plan[i][1] for i in members}
        # rows: one per distinct prompt under greedy decoding; one per request under sampling
        rows: dict[int, list[int]] = {}  # row's request -> the requests that take its output
        first_of: dict[tuple, int] = {}
        for i in members:
            if settings.do_sample:
                rows[i] = [i]
            elif encoded[i] in first_of:
                rows[first_of[encoded[i]]].append(i)
            else:
                first_of[encoded[i]] = i
                rows[i] = [i]
        task = lambda i: str(requests[i].task_name)  # noqa: E731
        seeds = {i: plan[i][2] for i in members}
        job = GenerationJob(
            lm.decoder, settings, encoded, seeds, rows, requests, lm.cache_hook, results, sink, pbar, task
        )
        if continuous(lm, settings):
            # each task's preamble from all its prompts in the call, computed or found in the cache
            basis: dict[str, list[tuple]] = defaultdict(list)
            for i, (planned, prompt, _) in enumerate(plan):
                if planned is settings:
                    basis[task(i)].append(prompt)
            decoder = ContinuousDecoder(lm.model, lm.tokenizer, lm.work, task_work)
            decoder.run_job(job, lm.gen_batch_size, lm.batcher.memory_budget, sink, basis)
        else:  # one task's requests: its work is what the runner did meanwhile
            before, started = replace(lm.work), time.perf_counter()
            lm.batcher.run(job.order, job, pbar, sink)
            if task_work is not None:
                work = task_work[task(members[0])]
                work.generated_tokens += lm.work.generated_tokens - before.generated_tokens
                work.tokens_computed += lm.work.tokens_computed - before.tokens_computed
                work.model_seconds += time.perf_counter() - started
    pbar.close()
    return lm.parallel.gather([results.get(i) for i in todo])
