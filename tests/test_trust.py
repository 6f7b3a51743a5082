"""Task YAMLs may run code (`!function`): only the packaged tasks and --include-path folders are loaded."""

from __future__ import annotations

import json
from pathlib import Path

from clirun import harness

EVIL_YAML = """task: evil_task
custom_dataset: !function evil.load
test_split: test
output_type: generate_until
doc_to_text: "{{q}}"
doc_to_target: "{{a}}"
"""
EVIL_PY = """from pathlib import Path
Path(__file__).with_name("EXECUTED").write_text("yes")
def load(**kwargs):
    Path(__file__).with_name("EXECUTED").write_text("yes")
"""


def plant(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evil.yaml").write_text(EVIL_YAML)
    (folder / "evil.py").write_text(EVIL_PY)
    return folder / "EXECUTED"


def test_code_in_a_data_mirror_or_a_run_record_is_never_loaded(tmp_path):
    # a data mirror is data: a task YAML (and its python) planted in it is not a task
    marker = plant(tmp_path / "mirror" / "evil")
    out = harness("tasks", "--data-dir", str(tmp_path / "mirror"))
    assert out.returncode == 0, out.stderr
    assert "evil_task" not in out.stdout and not marker.exists()
    out = harness("run", "--tasks", "evil_task", "--data-dir", str(tmp_path / "mirror"))
    assert out.returncode == 2 and "unknown task 'evil_task'" in out.stderr and not marker.exists()

    # a run record naming an include path (as every spec.json does) is listed, never followed
    marker = plant(tmp_path / "elsewhere")
    run = tmp_path / "runs" / "20261123T000000Z-m-abcdef12"
    run.mkdir(parents=True)
    (run / "results.json").write_text(
        json.dumps(
            {
                "harness": {"model": {"name": "m"}, "spec_sha256": "abcdef12"},
                "results": {"evil_task": {"acc,none": 1.0}},
                "configs": {"evil_task": {}},
            }
        )
    )
    (run / "spec.json").write_text(json.dumps({"spec": {"include_paths": [str(tmp_path / "elsewhere")]}}))
    out = harness("runs", "--runs", str(tmp_path / "runs"), "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["tasks"] == ["evil_task"] and not marker.exists()

    # named with --include-path, the same folder is the user's own tasks: loaded (the control)
    out = harness("tasks", "evil_task", "--include-path", str(tmp_path / "elsewhere"))
    assert out.returncode == 0 and "evil_task" in out.stdout
