"""The Python API: harness.evaluate() stores what `harness run` stores; bad input raises UserErrors.
And the run store options (`--runs`, its old name `--runs-dir`) on the runs it made."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import harness as cli
from clirun import library_noise, progress_lines

import harness
from harness import errors
from harness.api import evaluate, make_spec
from harness.spec import RunSpec
from harness.store import RunStore, read_samples

CLI_ARGS = [
    "run",
    "--tasks",
    "demo_capitals,demo_arithmetic",
    "--limit",
    "3",
    "--gen-kwargs",
    "max_new_tokens=4",
    "--seed",
    "7",
]
API_ARGS = dict(
    model="smollm2-135m", tasks=["demo_capitals", "demo_arithmetic"], limit=3, gen_kwargs={"max_new_tokens": 4}, seed=7
)


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory, smollm2_weights):
    """One store: a run by `harness run`, then the same by harness.evaluate()."""
    store = tmp_path_factory.mktemp("api") / "runs"
    out = cli(*CLI_ARGS, "--output", str(store))
    assert out.returncode == 0, out.stderr[-2000:]
    (cli_dir,) = RunStore(store).runs()
    record = harness.evaluate(**API_ARGS, output=store, use_cache=False)  # computed, not replayed from the cache
    (api_dir,) = set(RunStore(store).runs()) - {cli_dir}
    assert record.run_id == api_dir.name and record.results == RunStore(store).load(api_dir).results
    return store, cli_dir, api_dir


@pytest.mark.model
def test_evaluate_stores_what_harness_run_stores(both_runs):
    _, cli_dir, api_dir = both_runs
    specs = [json.loads((d / "spec.json").read_text()) for d in (cli_dir, api_dir)]
    for spec in specs:
        spec.pop("run_id")
    assert specs[0] == specs[1]  # spec hash, spec, model identity, tasks and their generation settings
    assert specs[0]["spec"]["limit"] == 3 and specs[0]["spec"]["gen_kwargs"] == {"max_gen_toks": 4}
    results = [json.loads((d / "results.json").read_text()) for d in (cli_dir, api_dir)]
    assert results[0]["harness"]["spec_sha256"] == results[1]["harness"]["spec_sha256"] == specs[0]["spec_sha256"]
    for key in ("results", "n-samples", "ci95", "configs"):
        assert results[0][key] == results[1][key], key
    assert read_samples(cli_dir) == read_samples(api_dir)


@pytest.mark.model
def test_runs_dir_is_still_a_name_of_runs(both_runs):
    store, cli_dir, api_dir = both_runs
    listed = {name: cli("runs", name, str(store), "--format", "json") for name in ("--runs", "--runs-dir")}
    assert listed["--runs"].returncode == 0 and listed["--runs"].stdout == listed["--runs-dir"].stdout
    assert {r["run_id"] for r in json.loads(listed["--runs"].stdout)} == {cli_dir.name, api_dir.name}
    compared = {name: cli("compare", cli_dir.name, api_dir.name, name, str(store)) for name in ("--runs", "--runs-dir")}
    assert compared["--runs"].returncode == 0 and compared["--runs"].stdout == compared["--runs-dir"].stdout
    base = store.parent / "baseline.json"
    assert cli("baseline", cli_dir.name, "--out", str(base), "--runs-dir", str(store)).returncode == 0
    checked = cli(
        "check", api_dir.name, "--baseline", cli_dir.name, "--runs-dir", str(store), env={"GITHUB_STEP_SUMMARY": None}
    )
    assert checked.returncode == 0 and "harness check: PASS" in checked.stdout
    both = cli("runs", "--runs", str(store), "--runs-dir", str(store))
    assert both.returncode == 2 and both.stderr.strip() == "error: give --runs only (--runs-dir is its older name)"
    assert "--runs-dir" not in cli("compare", "--help").stdout


def test_evaluate_takes_the_options_of_harness_run():
    # a new RunSpec field is an argument of evaluate() and an option of `harness run`, or this fails
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    assert set(inspect.signature(evaluate).parameters) == fields | {"output", "use_cache", "verbose"}
    from harness.cli import run

    renamed = {"include_path": "include_paths", "compile_model": "compile", "no_cache": "use_cache"}
    options = {renamed.get(p.name, p.name) for p in run.params} - {"num_processes"}
    assert options == fields | {"output", "use_cache"}
    defaults = {p.name: p.default for p in inspect.signature(evaluate).parameters.values()}
    assert make_spec(defaults.pop("model"), ["demo"]) == RunSpec(model="smollm2-135m", tasks=("demo",))


BAD = {
    "no tasks": (dict(tasks=[]), errors.BadOptionError, "names no task"),
    "unknown task": (dict(tasks=["no_such_task"]), errors.UnknownTaskError, "unknown task 'no_such_task'"),
    "tasks not names": (dict(tasks=[1, 2]), errors.BadOptionError, "expected task names"),
    "tasks none": (dict(tasks=None), errors.BadOptionError, "expected task names"),
    "limit zero": (dict(tasks="demo", limit=0), errors.BadOptionError, "--limit must be positive"),
    "limit a word": (dict(tasks="demo", limit="all"), errors.BadOptionError, "--limit 'all'"),
    "negative shots": (dict(tasks="demo", num_fewshot=-1), errors.BadOptionError, "--num-fewshot"),
    "shots a float": (dict(tasks="demo", num_fewshot=1.5), errors.BadOptionError, "num_fewshot 1.5"),
    "unknown gen kwarg": (dict(tasks="demo", gen_kwargs={"foo": 1}), errors.BadOptionError, "unknown setting 'foo'"),
    "gen kwargs string": (dict(tasks="demo", gen_kwargs="{bad json"), errors.BadOptionError, "--gen-kwargs"),
    "bad batch size": (dict(tasks="demo", batch_size="big"), errors.BadOptionError, "batch-size"),
    "negative bootstrap": (dict(tasks="demo", bootstrap_iters=-1), errors.BadOptionError, "--bootstrap-iters"),
    "unknown model": (dict(tasks="demo", model="nosuch"), errors.UnknownModelError, "unknown model 'nosuch'"),
    "data dir missing": (dict(tasks="demo", data_dir="/no/such/dir"), errors.DataUnavailableError, "is not a folder"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_a_user_error(case, tmp_path):
    kwargs, error, message = BAD[case]
    with pytest.raises(error, match=None) as caught:
        evaluate(**kwargs, output=tmp_path / "runs")
    assert message in str(caught.value)
    assert not (tmp_path / "runs").exists() or not RunStore(tmp_path / "runs").runs()


def test_output_that_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(errors.UserError, match="not a writable folder"):
        evaluate(tasks="demo", output=tmp_path / "a_file")


def test_load_runs_is_the_stores_table():
    from harness import store

    assert harness.load_runs is store.load_runs


@pytest.mark.model
def test_a_script_calling_evaluate_shows_no_library_noise(tmp_path, smollm2_weights):
    # the bar, as a script in a fresh interpreter (this process's quiet is already set by other tests)
    code = "\n".join(
        [
            "import harness",
            f"r = harness.evaluate(model='smollm2-135m', tasks=['demo_capitals'], limit=5, output={str(tmp_path)!r},"
            " use_cache=False)",
            "print('stored', r)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path.home(), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = RunStore(tmp_path).runs()
    assert json.loads((run_dir / "spec.json").read_text())["spec"]["limit"] == 5
    assert library_noise(out.stderr) == [], out.stderr
    assert any(line.startswith("loglikelihood:") for line in progress_lines(out.stderr))
