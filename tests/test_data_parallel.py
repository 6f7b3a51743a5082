"""Data parallel through accelerate: two CPU processes (gloo) give the one-process results."""

from __future__ import annotations

import json
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
    assert a["results"] == b["results"]
    assert a["n-samples"] == b["n-samples"]
    assert a["harness"]["spec_sha256"] == b["harness"]["spec_sha256"]
