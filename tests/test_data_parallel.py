"""Data parallel through accelerate: two CPU processes (gloo) give the one-process results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.store import RunStore

pytestmark = pytest.mark.model

# --no-cache: both runs compute everything (the work split is asserted below)
ARGS = ["run", "--tasks", "demo_capitals,demo_arithmetic,demo_text", "--limit", "12", "--batch-size", "4", "--no-cache"]


def only_run(runs: Path) -> Path:
    (run,) = RunStore(runs).runs()
    return run


def test_two_processes_give_the_same_results_as_one(tmp_path, smollm2_weights):
    # The same threads per process in both runs: CPU matrix products round differently with other
    # thread counts (a 1e-7 effect on probabilities), which is not what this test is about.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    one = subprocess.run(
        [sys.executable, "-m", "harness", *ARGS, "--output", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path.home(),
        env=env,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    # `--num-processes 2` runs the same command under `accelerate launch` (two CPU processes over gloo)
    two = subprocess.run(
        [sys.executable, "-m", "harness", *ARGS, "--num-processes", "2", "--output", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path.home(),
        env=env,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a = json.loads((only_run(tmp_path / "one") / "results.json").read_text())
    b = json.loads((only_run(tmp_path / "two") / "results.json").read_text())
    # Every request is computed in the same batch as in one process: the same numbers, bit for bit,
    # probability-based ones (ECE, Brier) included.
    assert a["results"] == b["results"]
    assert a["results"]  # something was compared
    assert a["n-samples"] == b["n-samples"]
    assert a["harness"]["spec_sha256"] == b["harness"]["spec_sha256"]
    # and the work was shared: the main process computed part of the tokens only
    work_one = json.loads((only_run(tmp_path / "one") / "env.json").read_text())["runner"]["tokens_computed"]
    work_two = json.loads((only_run(tmp_path / "two") / "env.json").read_text())["runner"]["tokens_computed"]
    assert 0.2 * work_one < work_two < 0.8 * work_one, (work_one, work_two)
