"""tasks/ and reports/ ship with the package: a non-editable install works the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.tasks import packaged_tasks_dir


def test_packaged_tasks_are_found_wherever_harness_is_installed():
    tasks = packaged_tasks_dir()
    assert (tasks / "mmlu" / "mmlu_anatomy.yaml").exists()
    assert (tasks / "demo" / "capitals.jsonl").exists()
    installed_as_wheel = not (Path(harness.__file__).parent.parent / "pyproject.toml").exists()
    if installed_as_wheel:
        assert tasks == Path(harness.__file__).parent / "_tasks"
        assert (Path(harness.__file__).parent / "_reports").is_dir()


def test_import_harness_and_help_stay_light():
    # `import harness` and `harness --help` load no model or evaluation library: the API's names load on use
    code = (
        "import sys, harness; from harness.cli import cli; cli.main(['--help'], standalone_mode=False); "
        "heavy = ('torch', 'transformers', 'lm_eval', 'datasets', 'pandas'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path.home(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
    assert {"evaluate", "load_runs"} <= set(dir(harness)) and callable(harness.evaluate)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        harness.no_such_name  # noqa: B018
