"""Served models under faults, for real: `harness run --model URL` against a real vLLM server, through
the fault-injecting proxy (tests/fault_proxy.py) or with the server SIGKILLed mid-run, gives the
numbers of an undisturbed run against the same server; bad servers and bad URLs get one line and
exit 2 and lose nothing; llama-cpp-python's misaligned prompt log-probabilities are refused.

One vLLM server for the whole session (tests/servers.py); each run has a request cache of its own,
so every run below computes its requests (or says how many came from its cache).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import harness, progress_lines
from fault_proxy import FaultProxy
from servers import free_port
from test_cli import assert_one_line_error
from test_resume import cached_results, stored

from harness.store import RunStore

# scoring (capitals: four choices each) and generation (arithmetic): both kinds of request
TASKS = ["--tasks", "demo_capitals,demo_arithmetic", "--limit", "30"]
BARS = ("loglikelihood:", "generate_until:")


def run_args(url: str, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", url, *TASKS, "--output", str(out), *extra]


def in_process(url: str, out: Path, cache: Path, *extra: str, env: dict | None = None):
    return harness(*run_args(url, out, *extra), env={"HARNESS_REQUEST_CACHE": str(cache), **(env or {})})


def assert_same_numbers(got: dict, want: dict) -> None:
    """Every metric and its interval; floats to rounding (vLLM batches requests differently from run
    to run, which moves log-probabilities in their last digits; a lost or repeated request moves a
    score by 1/30)."""
    assert got["results"].keys() == want["results"].keys()
    for task, scores in want["results"].items():
        for key, value in scores.items():
            if isinstance(value, float):
                assert got["results"][task][key] == pytest.approx(value, rel=1e-3, abs=1e-9), (task, key)
            else:
                assert got["results"][task][key] == value, (task, key)
    assert got["n-samples"] == want["n-samples"]


def no_run_stored(out: Path) -> bool:
    return not out.exists() or not RunStore(out).runs()


def assert_one_error_line(returncode: int, stderr: str, expected: str) -> str:
    """Exit 2 and one line on stderr besides the progress bars of the work done before the fault
    (and a rerun's note on requests an earlier run lost in flight)."""
    lines = [line for line in progress_lines(stderr) if not line.startswith(BARS)]
    assert returncode == 2, stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def undisturbed(vllm_server, tmp_path_factory):
    d = tmp_path_factory.mktemp("undisturbed")
    out = in_process(vllm_server.base_url, d / "runs", d / "cache.sqlite")
    assert out.returncode == 0, out.stderr[-3000:]
    results, env = stored(d / "runs")
    runner = env["runner"]
    assert runner["requests_from_cache"] == 0 and runner["requests_computed"] > 100
    return results, runner


# ---------------------------------------------------------------------------------------- the proxy
def test_the_proxy_faults_change_no_number(vllm_server, undisturbed, tmp_path):
    whole, work = undisturbed
    with FaultProxy(vllm_server.base_url) as proxy:
        proxy.inject("429", every=5, retry_after=1)
        proxy.inject("500", every=7)
        proxy.inject("truncate", every=11)
        proxy.inject("drop", every=13)
        proxy.inject("stall", next=1, seconds=25)  # longer than --timeout
        out = in_process(
            proxy.base_url, tmp_path / "runs", tmp_path / "cache.sqlite", "--timeout", "15", "--max-retries", "10"
        )
        counts = dict(proxy.counts)
    assert out.returncode == 0, out.stderr[-3000:]
    assert all(counts.get(kind, 0) >= 1 for kind in ("429", "500", "truncate", "drop", "stall")), counts
    results, env = stored(tmp_path / "runs")
    assert_same_numbers(results, whole)
    served = env["runner"]["served"]
    faults = sum(counts[kind] for kind in ("429", "500", "truncate", "drop", "stall"))
    assert served["retries"] == faults, (served, counts)  # each fault cost one retry, nothing more
    assert served["rate_limited"] == counts["429"]
    assert env["runner"]["requests_computed"] == work["requests_computed"]


# ---------------------------------------------------------------------------------------- a dead server
def subprocess_run(url: str, out: Path, cache: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *run_args(url, out, *extra)],
        env={**os.environ, "HARNESS_REQUEST_CACHE": str(cache)},
        cwd=Path.home(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_at(proc: subprocess.Popen, cache: Path, at_least: int, total: int) -> int:
    """Freeze the run (SIGSTOP) once its cache holds at_least results and return how many it holds; the
    caller kills the server, then lets the run go on (SIGCONT). The run is frozen while the cache is
    read, so it cannot outrun the poll: once in CI it did (the server died after the last answer, the
    run saw no fault and retried nothing)."""
    while True:
        proc.send_signal(signal.SIGSTOP)
        saved = cached_results(cache)
        if saved >= at_least:
            assert saved < total, f"nothing was left to do when the server died ({saved} of {total})"
            return saved
        proc.send_signal(signal.SIGCONT)
        assert proc.poll() is None, f"the run ended before {at_least} results: {proc.communicate()[1][-3000:]}"
        time.sleep(0.05)


def test_a_server_killed_mid_run_stops_it_with_one_line_and_the_rerun_finishes(vllm_server, undisturbed, tmp_path):
    whole, work = undisturbed
    total = work["requests_computed"]
    cache = tmp_path / "cache.sqlite"
    # few retries: the run gives up while the server is down (it takes minutes to come back)
    proc = subprocess_run(
        vllm_server.base_url, tmp_path / "killed", cache, "--max-retries", "2", "--max-concurrency", "4"
    )
    try:
        stop_at(proc, cache, total // 3, total)
        vllm_server.kill()
        proc.send_signal(signal.SIGCONT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
        vllm_server.ensure_running()
    # a request out when the server died: "failed ... after 3 attempts"; none: "cannot be reached"
    line = assert_one_error_line(proc.returncode, stderr, "server http://127.0.0.1:")
    assert "run the same command again" in line or "cannot be reached" in line, line
    saved = cached_results(cache)
    assert total // 3 <= saved < total
    assert no_run_stored(tmp_path / "killed")

    out = in_process(vllm_server.base_url, tmp_path / "resumed", cache, "--max-concurrency", "4")
    assert out.returncode == 0, out.stderr[-3000:]
    results, env = stored(tmp_path / "resumed")
    assert_same_numbers(results, whole)
    resumed = env["runner"]
    # what came back before the kill is not asked again; only what was in flight is
    assert resumed["requests_from_cache"] + resumed["requests_computed"] == total
    assert resumed["requests_from_cache"] >= saved
    assert resumed["requests_computed"] == total - saved
    # the marker counts what was out when the run stopped (sent, waiting to be retried, queued)
    assert 0 < resumed["interrupted_in_flight"] <= total - saved


def test_a_run_rides_out_a_server_killed_twice(vllm_server, undisturbed, tmp_path):
    whole, work = undisturbed
    total = work["requests_computed"]
    cache = tmp_path / "cache.sqlite"
    # retries enough to wait out two restarts (backoff grows to 30 s a try)
    proc = subprocess_run(
        vllm_server.base_url, tmp_path / "runs", cache, "--max-retries", "40", "--max-concurrency", "4"
    )
    try:
        for share in (1 / 4, 2 / 3):
            stop_at(proc, cache, int(total * share), total)
            vllm_server.kill()
            proc.send_signal(signal.SIGCONT)  # its requests out now fail; it retries while the server starts
            time.sleep(2)
            vllm_server.start()
        _, stderr = proc.communicate(timeout=1200)
    finally:
        proc.kill()
        vllm_server.ensure_running()
    assert proc.returncode == 0, stderr[-3000:]
    results, env = stored(tmp_path / "runs")
    assert_same_numbers(results, whole)
    runner = env["runner"]
    assert runner["requests_computed"] == total and runner["served"]["retries"] >= 2


# ---------------------------------------------------------------------------------------- bad servers
def test_a_wrong_url_and_a_refused_connection_get_one_line(tmp_path):
    for url in ("http://no-such-host.invalid:8000/v1", f"http://127.0.0.1:{free_port()}/v1"):
        out = in_process(url, tmp_path / "runs", tmp_path / "cache.sqlite", "--max-retries", "1")
        assert_one_line_error(out, "cannot be reached")
        assert no_run_stored(tmp_path / "runs")


def test_a_wrong_key_gets_one_line_and_is_never_shown(vllm_server, tmp_path):
    with FaultProxy(vllm_server.base_url, api_key="the-right-key") as proxy:
        out = in_process(
            proxy.base_url,
            tmp_path / "runs",
            tmp_path / "cache.sqlite",
            "--api-key-env",
            "SERVED_KEY",
            env={"SERVED_KEY": "a-wrong-key"},
        )
    assert_one_line_error(out, "refused the API key (HTTP 401)")
    assert "a-wrong-key" not in out.stderr + out.stdout


def test_an_unknown_model_name_gets_one_line(vllm_server, tmp_path):
    out = in_process(vllm_server.base_url, tmp_path / "runs", tmp_path / "cache.sqlite", "--api-model", "nosuch")
    assert_one_line_error(out, "serves no model 'nosuch' (it serves: smollm2)")


def test_a_server_without_models_gets_one_line(vllm_server, tmp_path):
    with FaultProxy(vllm_server.base_url, models=False) as proxy:
        out = in_process(proxy.base_url, tmp_path / "runs", tmp_path / "cache.sqlite")
    assert_one_line_error(out, "has no /v1/models: name the model with --api-model")


def test_malformed_json_gets_one_line_and_loses_nothing(vllm_server, undisturbed, tmp_path):
    whole, work = undisturbed
    cache = tmp_path / "cache.sqlite"
    with FaultProxy(vllm_server.base_url) as proxy:
        # the endpoint check's six requests and forty more answer well; from then on, nothing is JSON
        proxy.inject("malformed", every=1, after=46)
        out = in_process(proxy.base_url, tmp_path / "broken", cache, "--max-retries", "1", "--max-concurrency", "1")
        assert proxy.counts["malformed"] >= 2
        assert_one_error_line(out.returncode, out.stderr, "answered completions with a body that is not JSON")
        saved = cached_results(cache)
        assert saved >= 30
        proxy.clear()
        out = in_process(proxy.base_url, tmp_path / "resumed", cache)
    assert out.returncode == 0, out.stderr[-3000:]
    results, env = stored(tmp_path / "resumed")
    assert_same_numbers(results, whole)
    assert env["runner"]["requests_from_cache"] >= saved


# ---------------------------------------------------------------------------------------- llama-cpp-python
def test_llamacpp_misaligned_logprobs_are_refused(llamacpp_server, tmp_path, shared_data):
    out = harness(
        "run",
        "--model",
        llamacpp_server.base_url,
        "--tasks",
        "mmlu_anatomy",
        "--data-dir",
        str(shared_data),
        "--output",
        str(tmp_path / "runs"),
    )
    line = assert_one_error_line(out.returncode, out.stderr, "fails the endpoint check")
    assert "log-probabilit" in line, line


def test_llamacpp_generation_runs(llamacpp_server, tmp_path, shared_data):
    out = harness(
        "run",
        "--model",
        llamacpp_server.base_url,
        "--tasks",
        "gsm8k_cot",
        "--limit",
        "20",
        "--data-dir",
        str(shared_data),
        "--output",
        str(tmp_path / "runs"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results, env = stored(tmp_path / "runs")
    assert results["n-samples"]["gsm8k_cot"]["effective"] == 20
    assert env["runner"]["served"]["endpoint_check"]["ok"] is False
    assert env["runner"]["requests_computed"] == 20
