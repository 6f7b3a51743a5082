"""Data parallel through accelerate: two CPU processes (gloo) give the one-process results."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

ARGS = ["run", "--tasks", "demo_capitals,demo_arithmetic", "--limit", "12", "--batch-size", "4"]


def only_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    return run


def test_two_processes_give_the_same_results_as_one(tmp_path, smollm2_weights):
    one = subprocess.run([sys.executable, "-m", "harness", *ARGS, "--output", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=600, cwd=Path.home())
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "-m", "harness", *ARGS, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, cwd=Path.home())
    assert two.returncode == 0, two.stderr[-2000:]
    a = json.loads((only_run(tmp_path / "one") / "results.json").read_text())
    b = json.loads((only_run(tmp_path / "two") / "results.json").read_text())
    # Decisions (accuracy, exact match) are the same exactly. Scores built from probabilities (ECE)
    # agree to float32 rounding only: each process batches and packs its own shard, and a row's
    # log-probabilities move in the last bits with the rows beside it (lm-eval's own batch sizes do too).
    assert a["results"].keys() == b["results"].keys()
    for task, metrics in a["results"].items():
        assert metrics.keys() == b["results"][task].keys()
        for key, value in metrics.items():
            other = b["results"][task][key]
            if key.split(",")[0] in ("acc", "acc_norm", "exact_match", "acc_stderr", "acc_norm_stderr",
                                     "exact_match_stderr") or not isinstance(value, float):
                assert value == other, (task, key)
            else:
                assert math.isclose(value, other, rel_tol=1e-5, abs_tol=1e-9), (task, key, value, other)
    assert a["n-samples"] == b["n-samples"]
    assert a["harness"]["spec_sha256"] == b["harness"]["spec_sha256"]
