"""The run store and request cache shared by concurrent runs; its index; secrets kept out of every artifact."""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.engine import FinishedRun
from harness.errors import UserError
from harness.record import TaskScore, compare_scores
from harness.store import RunStore, load_runs


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path.home(),
        env={**os.environ, **(env or {})},
    )


def test_two_saves_under_one_id_keep_both_runs(tmp_path):
    store = RunStore(tmp_path)
    record = {
        "harness": {"model": {"name": "m"}, "spec_sha256": "ab"},
        "results": {"t": {"acc,none": 0.5}},
        "configs": {"t": {}},
    }
    first = store.write_run("20261123T000000Z-m-ab", record, [], {}, {"started": "2026-11-23T00:00:00"})
    second = store.write_run("20261123T000000Z-m-ab", record, [], {}, {"started": "2026-11-23T00:00:00"})
    assert first != second and first.is_dir() and second.is_dir()
    assert [r["run_id"] for r in store.query()] == sorted([first.name, second.name])
    # the first id is a prefix of the second (`ID-2`): named in full it is that run, not an ambiguity
    assert store.find(first.name) == first and store.find(second.name) == second
    with pytest.raises(UserError, match="ambiguous"):
        store.find("20261123T000000Z")


@pytest.mark.model
def test_two_concurrent_runs_share_a_store_and_a_cache(tmp_path, smollm2_weights):
    runs, cache = tmp_path / "runs", tmp_path / "cache.sqlite"
    env = {**os.environ, "HARNESS_REQUEST_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    procs = {
        task: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness",
                "run",
                "--tasks",
                task,
                "--limit",
                "20",
                "--batch-size",
                "1",
                "--output",
                str(runs),
            ],
            env=env,
            cwd=Path.home(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for task in ("demo_capitals", "demo_arithmetic")
    }
    for task, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (task, err[-2000:])
    listed = json.loads(harness("runs", "--runs", str(runs), "--format", "json").stdout)
    assert sorted(t for r in listed for t in r["tasks"]) == ["demo_arithmetic", "demo_capitals"]
    for row in listed:  # each run complete: every file, every doc scored
        run_dir = runs / row["run_id"]
        results = json.loads((run_dir / "results.json").read_text())
        (task,) = row["tasks"]
        assert results["n-samples"][task]["effective"] == 20
        with gzip.open(run_dir / "samples.jsonl.gz", "rt") as f:
            assert sum(1 for _ in f) == 20
    # both runs' requests are in the cache: running both again computes nothing
    for task in ("demo_capitals", "demo_arithmetic"):
        again = harness(
            "run",
            "--tasks",
            task,
            "--limit",
            "20",
            "--batch-size",
            "1",
            "--output",
            str(tmp_path / "again"),
            env={"HARNESS_REQUEST_CACHE": str(cache), "OMP_NUM_THREADS": "1"},
        )
        assert again.returncode == 0, again.stderr[-2000:]
    for run_dir in RunStore(tmp_path / "again").runs():
        work = json.loads((run_dir / "env.json").read_text())["runner"]
        assert work["requests_computed"] == 0 and work["requests_from_cache"] > 0
    # the index is rebuilt from the folders: a removed run disappears from the listing
    csv = harness("runs", "--runs", str(runs), "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("run_id,created,model") and len(csv) == 3
    import shutil

    shutil.rmtree(runs / listed[0]["run_id"])
    assert len(json.loads(harness("runs", "--runs", str(runs), "--format", "json").stdout)) == 1


@pytest.mark.model
def test_no_secret_of_the_environment_reaches_an_artifact(tmp_path, smollm2_weights):
    secret = "hf_Zq8rT4secretTOKENvalue91"
    out = harness(
        "-v",
        "run",
        "--tasks",
        "demo_capitals",
        "--limit",
        "2",
        "--output",
        str(tmp_path / "runs"),
        "--system-instruction",
        f"the key is {secret}",
        env={"HF_TOKEN": secret, "OMP_NUM_THREADS": str(torch.get_num_threads())},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert secret not in out.stdout and secret not in out.stderr
    (run_dir,) = RunStore(tmp_path / "runs").runs()
    for path in run_dir.iterdir():
        text = gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text()
        assert secret not in text, path.name
    env = json.loads((run_dir / "env.json").read_text())
    assert "the key is ***" in env["argv"]  # masked, not dropped


def finished_run(samples: dict) -> FinishedRun:
    """A finished run as the engine hands it over: lm-eval's results dict (a group, a task, a NaN
    stderr, a corpus metric logged as items), samples, spec record and environment."""
    results = {
        "results": {
            "t": {
                "alias": "t",
                "acc,none": 0.5,
                "acc_stderr,none": 0.25,
                "bleu,none": 12.5,
                "bleu_stderr,none": float("nan"),
            },
            "g": {"alias": "g", "acc,none": 0.5, "acc_stderr,none": 0.25},
        },
        "groups": {"g": {"alias": "g", "acc,none": 0.5, "acc_stderr,none": 0.25}},
        "group_subtasks": {"g": ["t"]},
        "ci95": {"t": {"acc,none": [0.01, 0.99], "bleu,none": None}},
        "signatures": {"t": {"acc,none": "acc|ci:normal|lm_eval:0.4.13"}},
        "higher_is_better": {"t": {"acc": True, "bleu": True}},
        "n-samples": {"t": {"original": 10, "effective": 4}},
        "n-shot": {"t": 0},
        "configs": {"t": {}},
        "harness": {"spec_sha256": "ab" * 32, "model": {"name": "m", "sha256": "cd" * 32, "dtype": "bfloat16"}},
    }
    spec = {"spec_sha256": "ab" * 32, "spec": {"model": "m", "num_fewshot": 0, "tasks": ["g"]}}
    return FinishedRun("ab" * 32, "m", results, samples, spec, {"started": "2026-11-23T00:00:00+00:00"})


def test_save_leaves_the_run_as_it_was_and_load_reads_back_what_it_wrote(tmp_path):
    samples = {
        "t": [
            {
                "doc_id": i,
                "doc_hash": f"h{i}",
                "filter": "none",
                "acc": float(i % 2),
                "arguments": {"gen_args_0": {"arg_0": f"prompt {i}", "arg_1": " a"}},
            }
            for i in range(4)
        ]
    }
    run = finished_run(samples)
    before = copy.deepcopy(run)
    store = RunStore(tmp_path)
    run_dir = store.save(run)
    assert run == before  # the id went into the files only
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["harness"]["run_id"] == run_dir.name == json.loads((run_dir / "spec.json").read_text())["run_id"]
    assert list(on_disk) == list(run.results) and list(on_disk["harness"])[-1] == "run_id"

    record = store.load(run_dir.name[:12])  # a unique prefix of the id, or the folder
    assert record == store.load(run_dir) and record.run_id == run_dir.name and record.folder == run_dir
    assert record.model["sha256"] == "cd" * 32 and record.spec_sha256 == "ab" * 32
    assert record.created == "2026-11-23T00:00:00+00:00"
    acc, bleu = record.tasks["t"].scores
    assert record.main_score("t") == acc
    assert (acc.metric, acc.filter, acc.value, acc.stderr, acc.ci95, acc.n) == (
        "acc",
        "none",
        0.5,
        0.25,
        (0.01, 0.99),
        4,
    )
    assert acc.signature == "acc|ci:normal|lm_eval:0.4.13" and acc.higher_is_better
    assert bleu.stderr is None and bleu.ci95 is None  # NaN: no stderr
    assert record.tasks["g"].group and record.tasks["g"].members == ("t",) and record.tasks["g"].n is None
    assert [(s.doc_id, s.key, s.score("acc"), s.row["prompt"]) for s in record.samples()] == [
        (i, f"{i}:h{i}", float(i % 2), f"prompt {i}") for i in range(4)
    ]
    assert record.label == "m (0-shot; bfloat16)"
    frame = load_runs(tmp_path)
    assert list(zip(frame.task, frame.metric, frame.value, frame.main)) == [
        ("t", "acc", 0.5, True),
        ("t", "bleu", 12.5, False),
        ("g", "acc", 0.5, True),
    ]
    assert set(frame.variant) == {"0-shot; bfloat16"} and frame.ci95_lo[0] == 0.01 and pd.isna(frame.stderr[1])

    with pytest.raises(UserError, match="not found"):
        store.load("19991231")
    store.save(run)
    with pytest.raises(UserError, match="ambiguous"):
        store.load(run_dir.name[:4])


def test_an_old_folder_with_results_alone_loads(tmp_path):
    run = tmp_path / "20261123T000000Z-m-abcdef12"
    run.mkdir()
    (run / "results.json").write_text(
        json.dumps(
            {
                "harness": {"model": {"name": "m"}, "spec_sha256": "abcdef12"},
                "results": {"t": {"exact_match,strict": 1, "sample_len": 3}},
                "configs": {"t": {}},
            }
        )
    )
    record = RunStore(tmp_path).load(run.name)
    assert record.spec == {} and record.env == {} and record.samples() == [] and record.label == "m"
    (score,) = record.tasks["t"].scores
    assert (score.metric, score.filter, score.value, score.stderr, score.n) == (
        "exact_match",
        "strict",
        1.0,
        None,
        None,
    )
    assert len(load_runs(run)) == 1


def test_compare_scores_pairs_documents_where_both_have_them_else_z_tests(tmp_path):
    from scipy.stats import binomtest, norm

    def score(value, stderr):
        return TaskScore("t", "acc", "none", value, stderr, None, None, True, None)

    a = {f"{i}:h": float(i % 3 == 0) for i in range(30)}
    b = {f"{i}:h": float(i % 2 == 0) for i in range(30)}
    test = compare_scores(score(0.3, 0.1), score(0.5, 0.1), a, b)
    a_only = sum(a[k] == 1 and b[k] == 0 for k in a)
    b_only = sum(a[k] == 0 and b[k] == 1 for k in a)
    assert (test.test, test.n, test.a_only, test.b_only) == ("mcnemar", 30, a_only, b_only)
    assert test.p_value == pytest.approx(binomtest(b_only, a_only + b_only, 0.5).pvalue, rel=1e-12)
    assert test.delta == pytest.approx(sum(b.values()) / 30 - sum(a.values()) / 30)
    # no document in common (a corpus metric, a group): the z-test on the two standard errors
    test = compare_scores(score(0.3, 0.1), score(0.5, 0.2), a, {})
    se = math.hypot(0.1, 0.2)
    assert test.test == "z-test (unpaired)" and test.n == 0
    assert test.p_value == pytest.approx(2 * norm.sf(0.2 / se), rel=1e-9)
    assert test.ci95 == pytest.approx((0.2 - norm.ppf(0.975) * se, 0.2 + norm.ppf(0.975) * se), rel=1e-6)
