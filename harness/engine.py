"""Turns a run spec into a finished, stored run: tasks → runner → lm-eval evaluator → run store."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.adapters import task_hooks
from harness.efficiency import Efficiency, total
from harness.errors import BadOptionError, UserError
from harness.hashing import config_sha256, json_sha256
from harness.lm_eval_compat import evaluator_git_hash
from harness.mirror import resolve_data_dir
from harness.models.catalog import LoadedModel, load_model
from harness.models.generation import generation_record
from harness.models.hf import HarnessLM
from harness.models.metering import TaskMeter, TaskWork
from harness.models.parallel import distributed_state
from harness.models.runner import Runner, refused_tasks
from harness.models.served import is_served, open_served_runner, served_options
from harness.paths import cache_dir
from harness.perturb import plan_perturbations
from harness.perturb.docs import PerturbHook
from harness.provenance import collect_env, quiet_git_describe
from harness.request_cache import RequestCache
from harness.scorers.statistics import attach_statistics
from harness.scorers.worst_case import add_worst_case, attach_perturbed
from harness.spec import RunSpec, spec_hash
from harness.tasks import build_task_manager, load_tasks, resolve_tasks

log = logging.getLogger(__name__)

# Config keys that say where data came from, not what the task is.
_LOCATION_KEYS = ("custom_dataset",)


@dataclass
class FinishedRun:
    """Everything a run produced, ready for the store: lm-eval results, samples, spec record, env."""

    spec_sha256: str
    model_name: str
    results: dict[str, Any]
    samples: dict[str, list[dict[str, Any]]]
    spec_record: dict[str, Any]
    env: dict[str, Any]


def run_evaluation(
    spec: RunSpec, loaded: LoadedModel | None = None, request_cache: str | os.PathLike | None = "default"
) -> FinishedRun | None:
    """Evaluate spec.model on spec.tasks: tasks (data first), model, lm-eval's evaluator, records.

    Under `accelerate launch` the processes share out the runner's batches (HarnessLM); the main
    process returns the run and the others return None. `loaded` reuses a model already in memory.
    Requests already in the request cache (default_cache_path(); None: no cache) are not computed
    again: a run killed at any point is resumed by running it again.
    """
    if not spec.tasks:
        raise BadOptionError("--tasks names no task: give task names, groups or globs, comma-separated")
    if spec.limit is not None and spec.limit <= 0:
        raise BadOptionError("--limit must be positive (a count of docs, or a fraction below 1)")
    if spec.num_fewshot is not None and spec.num_fewshot < 0:
        raise BadOptionError("--num-fewshot must be 0 or more")
    started = time.time()
    data_dir = resolve_data_dir(spec.data_dir)
    tm = build_task_manager(spec.include_paths, data_dir, hooks=task_hooks())
    selection = resolve_tasks(tm, list(spec.tasks), data_dir)
    for name, why in selection.skipped.items():
        log.warning("skipping %s: %s", name, why)
    built = load_tasks(tm, selection.names)  # before the model: a missing dataset fails in seconds
    plan = plan_perturbations(spec.perturb, data_dir) if spec.perturb else None  # so does a missing word list
    cache_path = default_cache_path() if request_cache == "default" else request_cache
    cache = RequestCache(cache_path) if cache_path else None  # so does a bad cache file
    if spec.adapter:
        from harness.adapters.lora import read_adapter

        read_adapter(spec.adapter)  # a wrong path fails before the model loads
    state = distributed_state()
    seeds = spec.seeds()
    lm, identity = _open_runner(spec, loaded, state, seeds)
    if cache is not None:
        lm.attach_request_cache(cache)
    built, refused = refused_tasks(lm, built)  # e.g. log-likelihood tasks on a server whose log-probabilities fail
    if refused and not built:
        raise UserError(f"cannot score {', '.join(refused)}: " + "; ".join(sorted(set(refused.values()))))
    for name, why in refused.items():
        log.warning("skipping %s: %s", name, why)
    selection.skipped.update(refused)
    # lm-eval records `git describe` of the working directory and lets git print "fatal: not a git
    # repository" outside one; ask git quietly (our own commit is in env.json)
    with evaluator_git_hash(quiet_git_describe), TaskMeter(lm) as meter:  # each task's work measured apart
        results = _simple_evaluate(lm, built, tm, spec, seeds)
        # each perturbation: the same tasks once more, on perturbed documents; requests a perturbation
        # left as they were (and a clean run's, on a second run) come from the request cache
        variants, perturbed_fields = {}, {}
        for name, perturbation in (plan.members if plan else {}).items():
            log.info("perturbation %s: evaluating the perturbed documents", name)
            hook = PerturbHook(perturbation, plan.seed if plan else None)
            ptm = build_task_manager(spec.include_paths, data_dir, hooks=(*task_hooks(), hook))
            ptasks, _ = refused_tasks(lm, load_tasks(ptm, selection.names))  # the tasks the clean pass ran
            perturbed = _simple_evaluate(lm, ptasks, ptm, spec, seeds)
            variants[name] = (perturbed or {}).get("samples", {})
            perturbed_fields[name] = hook.fields
    if results is None or (state is not None and not state.is_main_process):
        return None  # a non-main process of a data-parallel run: the main one stores the run
    samples = results.pop("samples", {})
    no_worst_case = add_worst_case(results, samples, variants, plan.sets, built) if plan else {}
    attach_perturbed(samples, variants)
    attach_statistics(results, samples, built, seed=seeds["numpy"], resamples=spec.bootstrap_iters)
    results.setdefault("config", {})["bootstrap_iters"] = spec.bootstrap_iters  # lm-eval recorded its 0
    tasks = task_records(results, samples)
    report = lm.report()
    for name, record in tasks.items():  # generation settings actually used, and who set each
        record["generation"] = generation_record(report.generation.get(name), spec.gen_kwargs)
    task_hashes = {name: t["config_sha256"] for name, t in tasks.items()}
    run_hash = spec_hash(spec, identity, task_hashes, plan.identity() if plan else None)
    results["harness"] = {
        "spec_sha256": run_hash,
        "model": identity,
        "skipped_tasks": selection.skipped,
        "truncated_requests": report.work.truncated_requests,
        "max_length": report.max_length,
    }
    if plan:
        results["harness"]["perturbation"] = {
            **plan.identity(),
            "skipped": plan.skipped,
            "fields": perturbed_fields,
            "no_worst_case": no_worst_case,
        }
    spec_record = {
        "spec_sha256": run_hash,
        "spec": spec.to_dict(),
        "data_dir": str(data_dir) if data_dir else None,
        "model": identity,
        "tasks": tasks,
    }
    env = collect_env(identity, started)
    env["runner"] = report.env_record()  # work done: tokens computed, forward passes, seconds, cache use
    env["efficiency"] = efficiency_record(meter, results, identity.get("device"))
    if cache is not None:
        cache.close()
    return FinishedRun(run_hash, spec.model, results, samples, spec_record, env)


def _open_runner(spec: RunSpec, loaded: LoadedModel | None, state, seeds: dict[str, int]) -> tuple[Runner, dict]:
    """The runner behind the seam, and the identity of the model it runs (the run record's model)."""
    if is_served(spec.model):  # a server computes the requests: no weights here
        served = open_served_runner(spec.model, served_options(spec), seed=seeds["torch"])
        return served, served.identity
    # one device per process (CPU processes just share the CPU)
    device = spec.device or (str(state.device) if state is not None and state.device.type != "cpu" else None)
    fresh = loaded is None
    loaded = loaded or load_model(spec.model, device=device, dtype=spec.dtype)
    if spec.adapter:
        from harness.adapters.lora import attach_adapter

        loaded = attach_adapter(loaded, spec.adapter, merge=spec.merge_adapter, in_place=fresh)
    # requests that sample without a seed of their own use the run's torch seed
    lm = HarnessLM(loaded=loaded, batch_size=spec.batch_size, compile=spec.compile, seed=seeds["torch"])
    return lm, loaded.identity


def default_cache_path() -> Path | None:
    """$HARNESS_REQUEST_CACHE (an sqlite file, or 'off'), else requests.sqlite in harness's cache folder."""
    value = os.environ.get("HARNESS_REQUEST_CACHE")
    if value is not None and value.strip().lower() in ("", "off", "0", "none"):
        return None
    return Path(value).expanduser() if value else cache_dir() / "requests.sqlite"


def efficiency_record(meter: TaskMeter, results: dict[str, Any], device: str | None) -> dict[str, Any]:
    """env.json's "efficiency": per task and for the run, requests, tokens, model time (harness.efficiency)."""
    docs = {name: n.get("effective") for name, n in results.get("n-samples", {}).items()}
    tasks = {}
    for name, work in meter.tasks.items():
        p50, p95 = work.latency_percentiles()
        tasks[name] = Efficiency(
            requests=work.requests,
            requests_computed=work.requests_computed,
            requests_from_cache=work.requests_from_cache,
            prompt_tokens=work.prompt_tokens,
            generated_tokens=work.generated_tokens,
            tokens_computed=work.tokens_computed,
            model_seconds=work.model_seconds,
            documents=docs.get(name),
            device=device,
            latency_p50_s=p50,
            latency_p95_s=p95,
        )
    run = total(tasks.values())
    everything = TaskWork(latencies_s=[s for work in meter.tasks.values() for s in work.latencies_s])
    p50, p95 = everything.latency_percentiles()
    return {
        "run": replace(run, latency_p50_s=p50, latency_p95_s=p95).to_dict() if run else None,
        "tasks": {name: e.to_dict() for name, e in tasks.items()},
    }


def task_records(results: dict[str, Any], samples: dict[str, list]) -> dict[str, dict[str, Any]]:
    """Per leaf task: version, config hash, shots, settings used, docs evaluated, data hash."""
    records = {}
    for name, config in results.get("configs", {}).items():
        config = {k: v for k, v in config.items() if k not in _LOCATION_KEYS}
        meta = dict(config.get("metadata") or {})
        meta.pop("config_source", None)
        config["metadata"] = meta
        doc_hashes = sorted(s.get("doc_hash", "") for s in samples.get(name, []))
        n = results.get("n-samples", {}).get(name, {})
        records[name] = {
            "version": results.get("versions", {}).get(name),
            "config_sha256": config_sha256(config),
            "num_fewshot": results.get("n-shot", {}).get(name),
            "output_type": config.get("output_type"),
            "generation_kwargs": config.get("generation_kwargs")
            if config.get("output_type") == "generate_until"
            else None,
            "dataset": {"path": config.get("dataset_path"), "name": config.get("dataset_name")},
            "docs_evaluated": n.get("effective"),
            "docs_total": n.get("original"),
            "data_sha256": json_sha256(doc_hashes),
        }
    return records


def _simple_evaluate(lm, built, tm, spec: RunSpec, seeds: dict[str, int]):
    import lm_eval

    return lm_eval.simple_evaluate(
        model=lm,
        tasks=built,
        task_manager=tm,
        num_fewshot=spec.num_fewshot,
        limit=spec.limit,
        gen_kwargs=dict(spec.gen_kwargs) if spec.gen_kwargs else None,
        apply_chat_template=spec.apply_chat_template,
        system_instruction=spec.system_instruction,
        bootstrap_iters=0,  # every stderr and interval comes from attach_statistics below: vectorised, seeded
        log_samples=True,
        random_seed=seeds["random"],
        numpy_random_seed=seeds["numpy"],
        torch_random_seed=seeds["torch"],
        fewshot_random_seed=seeds["fewshot"],
    )
