"""The `harness` command: in-process through click's CliRunner (tests/clirun.py), as a user runs it;
a few smoke tests start the installed console script itself (a real run, exit codes, --debug)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import harness, library_noise, progress_lines
from conftest import REPO

from harness.store import RunStore

CONSOLE_SCRIPT = Path(sys.executable).parent / "harness"


def console_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed `harness` script in a process of its own, run outside the checkout."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=Path.home(),
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.model
def test_run_prints_a_score_table_and_stores_the_run(tmp_path, smollm2_weights):
    # the console script, computing every request (no cache): what a user sees on a first run
    out = console_script(
        "run",
        "--model",
        "smollm2-135m",
        "--tasks",
        "demo_capitals,demo_text",
        "--limit",
        "4",
        "--output",
        str(tmp_path / "runs"),
        "--no-cache",
    )
    assert out.returncode == 0, out.stderr
    for word in ("demo_capitals", "acc", "acc_norm", "word_perplexity", "stderr"):
        assert word in out.stdout
    runs = RunStore(tmp_path / "runs").runs()
    assert len(runs) == 1 and (runs[0] / "results.json").exists()
    assert str(runs[0]) in out.stdout.replace("\n", "")
    # no library noise: no lm-eval bars per task or for tokenizing, no datasets "Map" bars, no library warnings
    assert library_noise(out.stderr) == [], out.stderr
    assert any(line.startswith("loglikelihood:") for line in progress_lines(out.stderr))


def test_models_lists_the_bundled_aliases():
    out = harness("models")
    assert out.returncode == 0
    assert "smollm2-135m" in out.stdout and "gemma3-270m" in out.stdout


def test_tasks_lists_families_and_data_sources(shared_data):
    out = harness("tasks", "mmlu_anatomy", "--data-dir", str(shared_data))
    assert out.returncode == 0 and "mmlu_anatomy" in out.stdout and "Hendrycks" in out.stdout
    out = harness("tasks", "demo")
    assert "demo_capitals" in out.stdout and "bundled" in out.stdout


def test_data_dir_comes_from_the_environment_on_every_command(shared_data):
    # `tasks` once defined --data-dir itself: HARNESS_DATA_DIR reaches it as it reaches `run`
    out = harness("tasks", "mmlu_anatomy", env={"HARNESS_DATA_DIR": str(shared_data)})
    assert out.returncode == 0 and "Hendrycks" in out.stdout
    assert "Hendrycks" not in harness("tasks", "mmlu_anatomy", env={"HARNESS_DATA_DIR": None}).stdout
    # and an unusable value from the environment is the same one-line error as the option's
    out = harness("tasks", "demo", env={"HARNESS_DATA_DIR": "/no/such/dir"})
    assert out.returncode == 2 and out.stderr.strip() == "error: data dir '/no/such/dir' is not a folder"


def test_shared_options_are_one_definition_everywhere():
    from harness.cli import cli

    def commands(group, prefix=()):
        for name, command in group.commands.items():
            yield from (
                commands(command, (*prefix, name)) if hasattr(command, "commands") else [((*prefix, name), command)]
            )

    data_dir, runs = {}, {}
    for path, command in commands(cli):
        params = {p.name: p for p in command.params}
        if "data_dir" in params:
            p = params["data_dir"]
            data_dir[path] = (tuple(p.opts), p.envvar, p.help, p.default)
        if "runs_dir" in params:
            p, alias = params["runs_dir"], params["runs_dir_alias"]
            runs[path] = (tuple(p.opts), p.envvar, p.help, p.default, tuple(alias.opts), alias.hidden)
    assert set(data_dir) == {("run",), ("tasks",), ("ladder",), ("finetune",), ("index", "build"), ("contamination",)}
    assert len(set(data_dir.values())) == 1 and next(iter(data_dir.values()))[1] == "HARNESS_DATA_DIR"
    assert set(runs) == {("runs",), ("leaderboard",), ("compare",), ("check",), ("baseline",)}
    assert set(runs.values()) == {(("--runs",), "HARNESS_RUNS_DIR", runs[("runs",)][2], "runs", ("--runs-dir",), True)}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "broken").mkdir()
    (d / "broken/broken.yaml").write_text("task: broken\ndataset_path: x\n  bad: [unclosed\n")
    (d / "empty_mirror").mkdir()
    (d / "a_file").write_text("not a folder")
    (d / "not_a_db.sqlite").write_text("this is text, not an sqlite database, and long enough for a header")
    (d / "runs/20261123T000000Z-m-abcdef12").mkdir(parents=True)
    (d / "runs/20261123T000000Z-m-abcdef12/results.json").write_text("{broken")
    for name, data, metric in (
        ("missing_file", "nope.jsonl", "acc"),
        ("empty_data", "empty.jsonl", "acc"),
        ("unknown_metric", "data.jsonl", "no_such_metric"),
    ):
        (d / name).mkdir()
        (d / name / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files: {{test: {d / data}}}\n"
            "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: ['a', 'b']\n"
            f"doc_to_target: 0\nmetric_list:\n  - metric: {metric}\n"
        )
    (d / "data.jsonl").write_text('{"q": "x"}\n')
    (d / "empty.jsonl").write_text("")
    (d / "baseline.json").write_text('{"not": "a baseline"}')
    (d / "broken_ladder.yaml").write_text("rungs:\n  - task: samsum\n    shots: 3\n")
    (d / "bad_yaml_ladder.yaml").write_text("rungs: [unclosed\n")
    return d


BAD = {
    "unknown task": (["run", "--tasks", "no_such_task"], "unknown task 'no_such_task'"),
    "near-miss task": (["run", "--tasks", "mmlu_anatomyy"], "did you mean mmlu_anatomy"),
    "glob matching nothing": (["run", "--tasks", "zzz_*"], "no task matches"),
    "unknown model": (["run", "--tasks", "demo", "--model", "nosuch"], "unknown model 'nosuch'"),
    "model path that is no model": (
        ["run", "--tasks", "demo", "--model", str(REPO / "README.md")],
        "not a model folder",
    ),
    "unknown gen kwarg": (["run", "--tasks", "demo", "--gen-kwargs", "foo=1"], "unknown setting 'foo'"),
    "malformed gen kwargs": (["run", "--tasks", "demo", "--gen-kwargs", "{bad json"], "--gen-kwargs"),
    "limit zero": (["run", "--tasks", "demo", "--limit", "0"], "--limit must be positive"),
    "negative shots": (["run", "--tasks", "demo", "--num-fewshot", "-1"], "--num-fewshot"),
    "data dir missing": (["run", "--tasks", "demo", "--data-dir", "/no/such/dir"], "is not a folder"),
    "include path missing": (["run", "--tasks", "demo", "--include-path", "/no/such/dir"], "is not a folder"),
    "malformed YAML": (["run", "--tasks", "broken", "--include-path", "{d}/broken"], "broken.yaml:3"),
    "dataset absent from mirror": (
        ["run", "--tasks", "mmlu_anatomy", "--data-dir", "{d}/empty_mirror"],
        "cais/mmlu/anatomy is not in the mirror",
    ),
    "bad option": (["run", "--tasks", "demo", "--no-such-option"], "No such option"),
    "missing --tasks": (["run"], "Missing option"),
    "bad batch size type": (["run", "--tasks", "demo", "--batch-size", "big"], "batch-size"),
    "unknown metric": (["run", "--tasks", "unknown_metric", "--include-path", "{d}/unknown_metric"], "no_such_metric"),
    "missing data file": (["run", "--tasks", "missing_file", "--include-path", "{d}/missing_file"], "nope.jsonl"),
    "empty dataset": (["run", "--tasks", "empty_data", "--include-path", "{d}/empty_data"], "empty_data"),
    "device that is no device": (["run", "--tasks", "demo", "--device", "gpu0"], "--device 'gpu0' is not a device"),
    "unknown dtype": (["run", "--tasks", "demo", "--dtype", "float33"], "unknown dtype 'float33'"),
    "output is a file": (["run", "--tasks", "demo", "--output", "{d}/a_file"], "not a writable folder"),
    "negative bootstrap": (["run", "--tasks", "demo", "--bootstrap-iters", "-1"], "--bootstrap-iters"),
    "zero processes": (["run", "--tasks", "demo", "--num-processes", "0"], "--num-processes"),
    "empty task list": (["run", "--tasks", ","], "--tasks"),
    "request cache not a database": (
        ["run", "--tasks", "demo_capitals", "--limit", "1"],
        "request cache",
        {"HARNESS_REQUEST_CACHE": "{d}/not_a_db.sqlite"},
    ),
    "run store missing": (["runs", "--runs", "/no/such/store"], "is not a folder"),
    "unreadable run folder": (["runs", "--runs", "{d}/runs"], "results.json not JSON"),
    "leaderboard of nothing": (["leaderboard", "--runs", "{d}/empty_mirror", "--out", "{d}/x.html"], "no runs in"),
    "compare one run": (["compare", "only_one"], "at least two runs"),
    "compare unknown run": (["compare", "nope1", "nope2", "--runs-dir", "{d}"], "run 'nope1' not found"),
    "check bad baseline": (
        ["check", "{d}/runs/20261123T000000Z-m-abcdef12", "--baseline", "{d}/baseline.json"],
        "is not a harness baseline",
    ),
    "check bad max drop": (
        ["check", "x", "--baseline", "{d}/baseline.json", "--max-drop", "lots"],
        "--max-drop 'lots'",
    ),
    "runs bad format": (["runs", "--format", "xml"], "--format"),
    "unknown ladder": (["ladder", "--task", "nosuch"], "no ladder 'nosuch': bundled ladders are samsum, squad"),
    "ladder rung with an unknown key": (["ladder", "--task", "{d}/broken_ladder.yaml"], "unknown keys shots"),
    "ladder that is not YAML": (["ladder", "--task", "{d}/bad_yaml_ladder.yaml"], "not valid YAML"),
    "ladder file missing": (["ladder", "--task", "{d}/none.yaml"], "No such file"),
    "ladder adapter missing": (["ladder", "--task", "samsum", "--adapter", "/no/such/adapter"], "does not exist"),
}


def bad_case(case: str, d: Path) -> tuple[list[str], str, dict]:
    args, expected, *env = BAD[case]
    return (
        [a.replace("{d}", str(d)) for a in args],
        expected,
        {k: v.replace("{d}", str(d)) for k, v in (env[0] if env else {}).items()},
    )


def assert_one_line_error(out, expected: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert expected in lines[0]


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_one_line_and_exit_2(case, bad_inputs):
    args, expected, env = bad_case(case, bad_inputs)
    assert_one_line_error(harness(*args, env=env), expected)


@pytest.mark.parametrize("case", ["unknown task", "bad option", "request cache not a database"])
def test_the_console_script_gives_one_line_and_exit_2(case, bad_inputs):
    # a harness error, a click usage error, an error from the environment: in a process of its own
    args, expected, env = bad_case(case, bad_inputs)
    assert_one_line_error(console_script(*args, env=env), expected)


def test_the_console_script_exit_codes_and_version():
    out = console_script("--version")
    assert out.returncode == 0 and "0.1.0" in out.stdout and not out.stderr
    out = console_script("models")
    assert out.returncode == 0 and "smollm2-135m" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, cwd=Path.home(), timeout=120
    )
    assert out.returncode == 0 and "run" in out.stdout and not out.stderr


def test_debug_flag_shows_the_traceback():
    out = console_script("--debug", "run", "--tasks", "no_such_task")
    assert out.returncode == 2 and "Traceback" in out.stderr
    out = harness("--debug", "run", "--tasks", "no_such_task")  # in-process too: the same main()
    assert out.returncode == 2 and "Traceback" in out.stderr and "unknown task 'no_such_task'" in out.stderr


@pytest.mark.model
def test_lm_eval_cli_runs_our_runner(tmp_path, smollm2_weights):
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "harness-lm-eval"),
            "run",
            "--model",
            "harness-hf",
            "--model_args",
            "pretrained=smollm2-135m",
            "--tasks",
            "demo_capitals",
            "--include_path",
            str(REPO / "tasks" / "demo"),
            "--limit",
            "3",
            "--output_path",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "demo_capitals" in out.stdout and "acc" in out.stdout


def stored_run(runs: Path):
    (run,) = RunStore(runs).runs()
    samples = [json.loads(line) for line in gzip.open(run / "samples.jsonl.gz", "rt")]
    return json.loads((run / "spec.json").read_text()), samples


@pytest.mark.model
def test_chat_template_and_system_instruction_reach_the_prompt(tmp_path, smollm2_weights):
    out = harness(
        "run",
        "--tasks",
        "demo_capitals",
        "--limit",
        "2",
        "--apply-chat-template",
        "--system-instruction",
        "Answer with the city only.",
        "--output",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    spec, samples = stored_run(tmp_path)
    assert spec["spec"]["apply_chat_template"] is True
    for s in samples:
        assert s["prompt"].startswith("<|im_start|>system\nAnswer with the city only.<|im_end|>")
        assert "<|im_start|>assistant" in s["prompt"]


@pytest.mark.model
def test_cli_gen_kwargs_override_the_task_and_are_recorded(tmp_path, smollm2_weights):
    out = harness(
        "run",
        "--tasks",
        "demo_arithmetic",
        "--limit",
        "3",
        "--gen-kwargs",
        "max_new_tokens=1",
        "--output",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    spec, samples = stored_run(tmp_path)
    used = spec["tasks"]["demo_arithmetic"]["generation_kwargs"]
    assert used["max_gen_toks"] == 1 and used["until"] == ["\n", "Question:"]  # CLI over task YAML
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_weights)
    assert all(len(tok.encode(s["resps"][0][0])) <= 1 for s in samples)
