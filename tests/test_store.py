"""The run store and request cache shared by concurrent runs; its index; secrets kept out of every artifact."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.store import RunStore


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=600,
                          cwd=Path.home(), env={**os.environ, **(env or {})})


def test_two_saves_under_one_id_keep_both_runs(tmp_path):
    store = RunStore(tmp_path)
    record = {"harness": {"model": {"name": "m"}, "spec_sha256": "ab"}, "results": {"t": {"acc,none": 0.5}},
              "configs": {"t": {}}}
    first = store.write_run("20261123T000000Z-m-ab", record, [], {}, {"started": "2026-11-23T00:00:00"})
    second = store.write_run("20261123T000000Z-m-ab", record, [], {}, {"started": "2026-11-23T00:00:00"})
    assert first != second and first.is_dir() and second.is_dir()
    assert [r["run_id"] for r in store.query()] == sorted([first.name, second.name])


@pytest.mark.model
def test_two_concurrent_runs_share_a_store_and_a_cache(tmp_path, smollm2_weights):
    runs, cache = tmp_path / "runs", tmp_path / "cache.sqlite"
    env = {**os.environ, "HARNESS_REQUEST_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    procs = {task: subprocess.Popen([sys.executable, "-m", "harness", "run", "--tasks", task, "--limit", "20",
                                     "--batch-size", "1", "--output", str(runs)],
                                    env=env, cwd=Path.home(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for task in ("demo_capitals", "demo_arithmetic")}
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
        again = harness("run", "--tasks", task, "--limit", "20", "--batch-size", "1", "--output", str(tmp_path / "again"),
                        env={"HARNESS_REQUEST_CACHE": str(cache), "OMP_NUM_THREADS": "1"})
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
    out = harness("-v", "run", "--tasks", "demo_capitals", "--limit", "2", "--output", str(tmp_path / "runs"),
                  "--system-instruction", f"the key is {secret}",
                  env={"HF_TOKEN": secret, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert out.returncode == 0, out.stderr[-2000:]
    assert secret not in out.stdout and secret not in out.stderr
    (run_dir,) = RunStore(tmp_path / "runs").runs()
    for path in run_dir.iterdir():
        text = gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text()
        assert secret not in text, path.name
    env = json.loads((run_dir / "env.json").read_text())
    assert "the key is ***" in env["argv"]  # masked, not dropped
