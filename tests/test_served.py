"""The served-model runner against a real vLLM server: its numbers are lm-eval 0.4.13
local-completions' through the same server (lm-eval's own model class, in-process) and harness's
in-process runner's on the same weights; the endpoint check passes; the key is never written; chat
refuses log-likelihood tasks.

The server: the session's `vllm_server` (tests/servers.py) runs vLLM from the venv whose python is
$HARNESS_VLLM_PYTHON (.ci/run sets it); $HARNESS_VLLM_BASE_URL points at one already running.
"""

from __future__ import annotations

import gzip
import math
import os
import urllib.request
from pathlib import Path

import pytest
from clirun import harness as harness_cli
from helpers import task_instances


def _served(base_url: str, tokenizer: str | None = None, api: str | None = None):
    from harness.models.served import ServedOptions, open_served_runner

    return open_served_runner(base_url, ServedOptions(tokenizer=tokenizer, api=api, max_concurrency=8))


def _lm_eval_local_completions(base_url: str, weights: Path, **extra):
    """lm-eval 0.4.13's own local-completions model class, as its CLI builds it."""
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    return LocalCompletionsAPI(
        base_url=f"{base_url}/completions",
        model="smollm2",
        tokenizer=str(weights),
        tokenizer_backend="huggingface",
        **extra,
    )


@pytest.fixture(scope="session")
def served_lm(vllm_server):
    return _served(vllm_server.base_url)  # the server's /tokenize


@pytest.fixture(scope="session")
def lm_eval_api(vllm_server):
    return _lm_eval_local_completions(vllm_server.base_url, vllm_server.weights)


def test_endpoint_check_passes_on_vllm(served_lm):
    check = served_lm.check
    assert check.ok, check.problem
    assert len(check.probes) == 3
    for probe in check.probes:  # vLLM's echo equals its generated log-probability
        assert probe["echoed_logprob"] == pytest.approx(probe["generated_logprob"], abs=1e-4)
    assert served_lm.tokens.mode == "server /tokenize"
    again = _served(served_lm.client.base_url)
    assert again.check.fingerprint == check.fingerprint  # the same weights, the same cache namespace


@pytest.mark.parametrize("task", ["mmlu_anatomy", "demo_capitals"])
def test_loglikelihood_matches_lm_eval_local_completions(task, served_lm, lm_eval_api, vllm_server, shared_data):
    """Single-token choices (MMLU letters, read off one top_logprobs request per question) and
    multi-token ones (capitals, echoed), through the server's tokenizer and a local one."""
    instances = task_instances(task, shared_data, limit=8)
    ours = served_lm.loglikelihood(instances)
    local = _served(vllm_server.base_url, tokenizer=str(vllm_server.weights)).loglikelihood(instances)
    theirs = lm_eval_api.loglikelihood(instances)
    assert len(ours) == len(theirs) == len(instances)
    for (a, ga), (b, gb), (c, gc) in zip(ours, local, theirs):
        assert a == pytest.approx(c, abs=2e-4) and b == pytest.approx(c, abs=2e-4)
        assert ga == gc and gb == gc


def test_text_offsets_without_tokens_match_lm_eval(vllm_server, lm_eval_api, shared_data):
    """A server with no /tokenize and no --tokenizer: prompts go as text and the continuation is
    found by the echoed tokens' character offsets (here on vLLM, told to forget its /tokenize)."""
    from harness.models.served.tokens import TEXT

    lm = _served(vllm_server.base_url)
    lm.tokens.mode = TEXT
    assert "give --tokenizer" in lm.refusal("loglikelihood_rolling")
    instances = task_instances("demo_capitals", shared_data, limit=6)
    ours, theirs = lm.loglikelihood(instances), lm_eval_api.loglikelihood(instances)
    for (a, ga), (b, gb) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=2e-4) and ga == gb


def test_loglikelihood_matches_in_process_runner(served_lm, harness_lm, shared_data):
    """vLLM's float32 numbers and transformers' on the same weights (the in-process runner)."""
    instances = task_instances("mmlu_anatomy", shared_data, limit=8)
    served = served_lm.loglikelihood(instances)
    local = harness_lm.loglikelihood(instances)
    for (a, _), (b, _) in zip(served, local):
        assert a == pytest.approx(b, abs=2e-3)
    picks = lambda scores: [max(range(4), key=lambda k: scores[q * 4 + k][0]) for q in range(len(scores) // 4)]  # noqa: E731
    assert picks(served) == picks(local)


def test_rolling_loglikelihood_matches_lm_eval(served_lm, lm_eval_api, vllm_server, shared_data):
    """Perplexity windows as lm-eval's API models cut them (BOS as the prefix token: a local tokenizer
    says which it is; vLLM's /tokenizer_info is off unless asked for, and then rolling is refused)."""
    instances = task_instances("demo_text", shared_data, limit=3)
    if served_lm.tokens.prefix_token_id is None:
        assert "give --tokenizer" in served_lm.refusal("loglikelihood_rolling")
    ours = _served(vllm_server.base_url, tokenizer=str(vllm_server.weights)).loglikelihood_rolling(instances)
    theirs = lm_eval_api.loglikelihood_rolling(instances, disable_tqdm=True)
    assert all(math.isfinite(x) for x in ours)
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_generation_identical_to_lm_eval(served_lm, lm_eval_api, shared_data):
    """Greedy outputs, every stop string, max tokens: the same text as local-completions'."""
    instances = task_instances("demo_arithmetic", shared_data, num_fewshot=3, limit=4)
    instances += task_instances("gsm8k_cot", shared_data, num_fewshot=8, limit=2)
    ours = served_lm.generate_until(instances)
    theirs = lm_eval_api.generate_until(instances)
    assert ours == theirs
    assert any(text.strip() for text in ours)


def test_chat_refuses_loglikelihood_and_generates(vllm_server, shared_data, tmp_path):
    import harness
    from harness.errors import UserError

    with pytest.raises(UserError, match=r"chat API cannot score log-likelihoods: use --api completions"):
        harness.evaluate(model=vllm_server.base_url, tasks="mmlu_anatomy", api="chat", limit=2, data_dir=shared_data)
    record = harness.evaluate(
        model=vllm_server.base_url,
        tasks="demo_arithmetic",
        api="chat",
        apply_chat_template=True,
        system_instruction="Answer with a number.",
        limit=2,
        data_dir=shared_data,
        output=tmp_path / "runs",
        bootstrap_iters=0,
    )
    assert record is not None and "demo_arithmetic" in record.tasks


def test_chat_generation_matches_lm_eval_local_chat_completions(vllm_server, shared_data):
    from lm_eval.models.openai_completions import LocalChatCompletion

    theirs_lm = LocalChatCompletion(base_url=f"{vllm_server.base_url}/chat/completions", model="smollm2")
    ours_lm = _served(vllm_server.base_url, api="chat")
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"}]
    instances = task_instances("demo_arithmetic", shared_data, limit=2)
    for inst in instances:  # the same chat history through each model's own chat face
        inst.arguments = (ours_lm.apply_chat_template(history), dict(inst.arguments[1], until=["\n\n"]))
    ours = ours_lm.generate_until(instances)
    for inst in instances:
        inst.arguments = (theirs_lm.apply_chat_template(history), inst.arguments[1])
    theirs = theirs_lm.generate_until(instances)
    assert ours == theirs and ours[0]


def test_api_key_is_never_written(vllm_server, shared_data, tmp_path, monkeypatch):
    import harness

    secret = "sk-served-" + os.urandom(12).hex()
    monkeypatch.setenv("HARNESS_SERVED_ACCESS", secret)  # a name redact.py does not treat as secret
    cache = tmp_path / "requests.sqlite"
    monkeypatch.setenv("HARNESS_REQUEST_CACHE", str(cache))
    record = harness.evaluate(
        model=vllm_server.base_url,
        tasks="demo_capitals",
        api_key_env="HARNESS_SERVED_ACCESS",
        limit=3,
        data_dir=shared_data,
        output=tmp_path / "runs",
        bootstrap_iters=0,
    )
    assert record is not None
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "env.json" for p in written) and cache in written
    for path in written:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        assert secret.encode() not in data, path


def test_cli_chat_refuses_loglikelihood_in_one_line(vllm_server, shared_data, tmp_path):
    out = harness_cli(
        "run", "--model", vllm_server.base_url, "--api", "chat", "--tasks", "mmlu_anatomy", "--limit", "2",
        "--data-dir", str(shared_data), "--output", str(tmp_path / "runs"),
    )  # fmt: skip
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: cannot score mmlu_anatomy: the chat API cannot score log-likelihoods: use --api completions "
        f"({vllm_server.base_url}/completions)"
    ]
    assert "Traceback" not in out.stderr


def test_sampled_repeats_go_as_one_request_with_n(served_lm, vllm_server, shared_data):
    """Three sampled repeats of a prompt: the server's own three samples for that prompt and seed (n=3)."""
    import json

    instances = task_instances("demo_arithmetic", shared_data, num_fewshot=3, limit=1)
    kwargs = {"until": ["\n"], "max_gen_toks": 8, "do_sample": True, "temperature": 1.0, "seed": 7}
    repeats = [instances[0]] * 3
    for inst in repeats:
        inst.arguments = (inst.arguments[0], kwargs)
    ours = served_lm.generate_until(repeats)
    payload = {
        "model": "smollm2",
        "prompt": served_lm.tokens.encode(instances[0].arguments[0]),
        "max_tokens": 8,
        "temperature": 1.0,
        "stop": ["\n"],
        "seed": 7,
        "n": 3,
    }
    request = urllib.request.Request(
        f"{vllm_server.base_url}/completions", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as r:
        choices = sorted(json.load(r)["choices"], key=lambda c: c["index"])
    assert ours == [c["text"] for c in choices]
