"""tasks/ and reports/ ship with the package: a non-editable install works the same."""

from __future__ import annotations

from pathlib import Path

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
