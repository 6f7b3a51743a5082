"""Efficiency in the record: each task's requests, tokens and model time, measured task by task;
the references are the stored samples (lm-eval's requests) and the model's own tokenizer."""

from __future__ import annotations

import json
import math

import pytest

from harness.efficiency import EFFICIENCY_COLUMNS
from harness.engine import run_evaluation
from harness.spec import RunSpec
from harness.store import ENV, RunStore, load_runs, read_json, read_samples

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2_weights):
    """The demo computed through an empty request cache, then the same spec again, all from it."""
    root = tmp_path_factory.mktemp("efficiency")
    cache = root / "requests.sqlite"
    spec = RunSpec(model="smollm2-135m", tasks=("demo",), limit=4, batch_size=4)
    store = RunStore(root / "runs")
    first = store.save(run_evaluation(spec, request_cache=cache))
    second = store.save(run_evaluation(spec, request_cache=cache))
    return store, first, second


def test_each_task_counts_its_own_requests_and_tokens(runs, smollm2_weights):
    from transformers import AutoTokenizer

    store, first, _ = runs
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_weights))
    record = store.load(first)
    samples: dict[str, list] = {}
    for s in read_samples(first):
        samples.setdefault(s["task"], []).append(s)
    for name, rows in samples.items():
        e = record.tasks[name].efficiency
        assert e is not None and e.requests == sum(len(s["arguments"]) for s in rows)
        assert (e.requests_computed, e.requests_from_cache, e.documents, e.device) == (e.requests, 0, 4, "cpu")
        assert e.model_seconds > 0 and e.tokens_computed > 0
    # loglikelihood: each (context, continuation) read as one sequence less its last token
    choices = [a for s in samples["demo_capitals"] for a in s["arguments"]]
    capitals = record.tasks["demo_capitals"].efficiency
    assert capitals.prompt_tokens == sum(len(tokenizer.encode(ctx + cont)) - 1 for ctx, cont in choices)
    assert capitals.generated_tokens == 0
    # rolling windows of a short document: every token of it, once
    text = record.tasks["demo_text"].efficiency
    assert text.prompt_tokens == sum(len(tokenizer.encode(s["arguments"][0][0])) for s in samples["demo_text"])
    # generation: the prompts' tokens, and between one and max_gen_toks tokens per request
    arithmetic = record.tasks["demo_arithmetic"].efficiency
    prompts = [s["arguments"][0] for s in samples["demo_arithmetic"]]
    assert arithmetic.prompt_tokens == sum(len(tokenizer.encode(p)) for p, _ in prompts)
    assert len(prompts) <= arithmetic.generated_tokens <= sum(kw["max_gen_toks"] for _, kw in prompts)
    # the split loses nothing: the tasks add up to the runner's own counters and to the run's total
    runner, run = read_json(first, ENV)["runner"], record.efficiency
    parts = [record.tasks[t].efficiency for t in samples]
    for field in ("prompt_tokens", "generated_tokens", "tokens_computed", "requests_computed"):
        assert sum(getattr(p, field) for p in parts) == runner[field] == getattr(run, field)
    assert run.model_seconds == pytest.approx(sum(p.model_seconds for p in parts))
    assert run.model_seconds < read_json(first, ENV)["seconds"]
    # a group without a score of its own still sums its members
    assert record.tasks["demo"].efficiency.requests == sum(p.requests for p in parts)


def test_derived_figures_follow_their_definitions_and_load_runs_shows_them(runs):
    store, first, _ = runs
    record = store.load(first)
    frame = load_runs(first)
    raw = read_json(first, ENV)["efficiency"]["tasks"]
    for name, task in record.tasks.items():
        e = task.efficiency
        if task.members:  # a group: its members' sums (per 1,000 of all their documents)
            assert e.seconds_per_1k_docs == pytest.approx(e.model_seconds / 12 * 1000)
            continue
        assert e.tokens_per_second == pytest.approx((e.prompt_tokens + e.generated_tokens) / e.model_seconds)
        assert e.seconds_per_1k_docs == pytest.approx(e.model_seconds / 4 * 1000)
        assert raw[name]["seconds_per_1k_docs"] == e.seconds_per_1k_docs  # written beside the counts
        rows = frame[frame.task == name]
        assert set(rows.seconds_per_1k_docs) == {e.seconds_per_1k_docs}
        assert set(rows.tokens_per_second) == {e.tokens_per_second} and set(rows.device) == {"cpu"}
        assert rows.latency_p50_s.isna().all()  # no served model: no latency


def test_a_run_from_the_cache_costs_no_model_time(runs):
    store, first, second = runs
    again = store.load(second)
    for name, task in again.tasks.items():
        e = task.efficiency
        assert e.from_cache and e.requests_from_cache == e.requests == store.load(first).tasks[name].efficiency.requests
        assert (e.prompt_tokens, e.generated_tokens, e.seconds_per_1k_docs, e.tokens_per_second) == (0, 0, None, None)
    frame = load_runs(second)
    assert frame.model_seconds.isna().all() and frame.seconds_per_1k_docs.isna().all()


def test_a_run_stored_before_efficiency_loads_without_it(runs, tmp_path):
    store, first, _ = runs
    old = tmp_path / first.name
    old.mkdir()
    for path in first.iterdir():
        (old / path.name).write_bytes(path.read_bytes())
    env = json.loads((old / ENV).read_text())
    del env["efficiency"]
    (old / ENV).write_text(json.dumps(env))
    record = RunStore(tmp_path).load(old.name)
    assert record.efficiency is None and all(t.efficiency is None for t in record.tasks.values())
    frame = load_runs(old)
    assert len(frame) == len(load_runs(first))
    assert all(frame[c].isna().all() for c in EFFICIENCY_COLUMNS)
    assert all(math.isfinite(v) for v in frame.value)
