"""What a served model is before any task runs: the model name, its context window, how prompts are
split into tokens, and whether its echoed prompt log-probabilities can be trusted.

The endpoint check probes a few short prompts. For each it asks for one greedy token with its
log-probability, then echoes the prompt with that token appended: the echoed log-probability of the
appended token must equal the generated one (to rounding), and every echoed token's value must equal
its own entry in the `top_logprobs` of its position. llama.cpp's server returns no prompt
log-probabilities; llama-cpp-python's returns them shifted by one position: both fail here, with one
line, instead of scoring log-likelihood tasks at chance. The probe's answers (tokens and rounded
log-probabilities) fingerprint the weights behind the name, for the request cache and the run record.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from harness.hashing import json_sha256
from harness.models.served.client import Client, ServerError

log = logging.getLogger(__name__)

PROBES = ("The capital of France is", "One, two, three, four,", "The opposite of hot is")
PROBE_TOP = 5
FINGERPRINT_DECIMALS = 1  # coarse enough that run-to-run noise of a server does not change it
DEFAULT_CONTEXT = 2048  # lm-eval's max_length for API models when the server does not say


def close(a: float, b: float) -> bool:
    """Equal to rounding: servers round log-probabilities, and batches change the last digits."""
    return abs(a - b) <= max(0.01, 0.01 * abs(b))


@dataclass(frozen=True)
class ServedModel:
    """The model behind a base URL: its name there and the context window it reports."""

    name: str
    max_model_len: int | None
    listed: tuple[str, ...]


def discover(client: Client, api_model: str | None) -> ServedModel:
    """The model to evaluate: --api-model, else the only one /v1/models lists."""
    answer = client.get("models", missing_ok=True)
    if answer is None:
        if api_model:
            return ServedModel(api_model, None, ())
        raise ServerError(f"server {client.shown} has no /v1/models: name the model with --api-model")
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        raise ServerError(f"server {client.shown} answered /v1/models with something that is not a model list")
    ids = tuple(m["id"] for m in data)
    if api_model is None:
        if len(ids) != 1:
            listed = ", ".join(ids) or "none"
            raise ServerError(f"server {client.shown} serves {len(ids)} models ({listed}): choose one with --api-model")
        api_model = ids[0]
    elif api_model not in ids:
        raise ServerError(
            f"server {client.shown} serves no model '{api_model}' (it serves: {', '.join(ids) or 'none'})"
        )
    entry = next(m for m in data if m["id"] == api_model)
    max_len = entry.get("max_model_len")
    return ServedModel(api_model, max_len if isinstance(max_len, int) and max_len > 0 else None, ids)


@dataclass(frozen=True)
class EndpointCheck:
    """The probe's verdict: whether echoed prompt log-probabilities are usable, and the weights' fingerprint."""

    ok: bool
    problem: str | None
    fingerprint: str
    probes: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"ok": self.ok, "problem": self.problem, "probes": self.probes}


def check_completions(client: Client, model: str) -> EndpointCheck:
    """Probe the completions endpoint (see the module's doc)."""
    try:
        return _probe(client, model)
    except ServerError as exc:
        if exc.status not in (400, 422):
            raise
    # a server that refuses echo or logprobs generates all the same: its greedy answers fingerprint it
    answers = client.run_all(
        [
            lambda s, p=p: s.call(
                "POST", "completions", {"model": model, "prompt": p, "max_tokens": 8, "temperature": 0, "seed": 1234}
            )
            for p in PROBES
        ]
    )
    texts = [((a or {}).get("choices") or [{}])[0].get("text") for a in answers]
    return EndpointCheck(False, "it refuses requests for log-probabilities (echo, logprobs)", json_sha256(texts))


def _probe(client: Client, model: str) -> EndpointCheck:
    greedy = client.run_all(
        [lambda s, p=p: s.call("POST", "completions", _payload(model, p, echo=False)) for p in PROBES]
    )
    picks = [_first_logprobs(client, answer) for answer in greedy]
    if any(pick is None for pick in picks):
        return _failed(greedy, "returns no log-probabilities for generated tokens")
    echoes = client.run_all(
        [
            lambda s, p=p, g=g: s.call("POST", "completions", _payload(model, p + g[0], echo=True))
            for p, g in zip(PROBES, picks)
        ]
    )
    problems, probes = [], []
    for prompt, pick, answer in zip(PROBES, picks, echoes):
        token, generated, _ = pick  # type: ignore[misc]  # None was refused above
        lp = _logprobs(answer)
        values = lp.get("token_logprobs") if lp else None
        tokens = lp.get("tokens") if lp else None
        if not lp or not values or not tokens or all(v is None for v in values[1:]):
            return _failed(greedy + echoes, "returns no prompt log-probabilities (echo)")
        if len(values) != len(tokens):
            return _failed(greedy + echoes, "echoes a different number of tokens and log-probabilities")
        probe: dict[str, Any] = {"prompt": prompt, "token": token, "generated_logprob": generated}
        # the appended token: the echoed position whose text is it and that ends the prompt
        at = _appended_position(lp, len(prompt), token)
        if at is not None and values[at] is not None:
            probe["echoed_logprob"] = values[at]
            if not close(values[at], generated):
                problems.append(
                    f"echoed prompt log-probabilities are misaligned: log p({token!r}) after {prompt!r} is "
                    f"{values[at]:.3f} echoed but {generated:.3f} generated"
                )
        tops = lp.get("top_logprobs") or []
        for i, (tok, value) in enumerate(zip(tokens, values)):
            top = tops[i] if i < len(tops) else None
            if value is None or not isinstance(top, dict) or tok not in top:
                continue
            if not math.isfinite(value) or value > 1e-6 or not close(value, top[tok]):
                problems.append(
                    f"echoed prompt log-probabilities are misaligned: token {tok!r} of {prompt!r} is echoed "
                    f"with {value:.3f} but its own top_logprobs entry says {top[tok]:.3f}"
                )
                break
        probes.append(probe)
    fingerprint = _fingerprint(greedy + echoes)
    if problems:
        return EndpointCheck(False, problems[0], fingerprint, probes)
    return EndpointCheck(True, None, fingerprint, probes)


def check_chat(client: Client, model: str) -> EndpointCheck:
    """Chat endpoints score no log-likelihoods: the probe only fingerprints the model (greedy answers)."""
    answers = client.run_all(
        [
            lambda s, p=p: s.call(
                "POST",
                "chat/completions",
                {
                    "model": model,
                    "messages": [{"role": "user", "content": p}],
                    "max_tokens": 8,
                    "temperature": 0,
                    "seed": 1234,
                },
            )
            for p in PROBES
        ]
    )
    texts = []
    for answer in answers:
        try:
            texts.append(answer["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise ServerError(f"server {client.shown} answered chat/completions without choices[0].message") from None
    return EndpointCheck(False, "the chat API returns no prompt log-probabilities", json_sha256(texts), [])


def _payload(model: str, prompt: str, *, echo: bool) -> dict[str, Any]:
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": PROBE_TOP,
        "echo": echo,
        "seed": 1234,
    }


def _logprobs(answer: Any) -> dict[str, Any] | None:
    try:
        lp = answer["choices"][0].get("logprobs")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return lp if isinstance(lp, dict) else None


def _first_logprobs(client: Client, answer: Any) -> tuple[str, float, dict] | None:
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list) or not answer["choices"]:
        raise ServerError(f"server {client.shown} answered completions without choices")
    lp = _logprobs(answer)
    if not lp or not lp.get("tokens") or not lp.get("token_logprobs") or lp["token_logprobs"][0] is None:
        return None
    tops = lp.get("top_logprobs") or [{}]
    return lp["tokens"][0], float(lp["token_logprobs"][0]), tops[0] or {}


def _appended_position(lp: dict[str, Any], prompt_chars: int, token: str) -> int | None:
    """Index of the echoed token that is the generated token appended after prompt_chars characters."""
    tokens, offsets = lp.get("tokens") or [], lp.get("text_offset")
    if isinstance(offsets, list) and len(offsets) == len(tokens):
        for i, (tok, offset) in enumerate(zip(tokens, offsets)):
            if offset == prompt_chars and tok == token:
                return i
    # without offsets: the last echoed token before the generated one (max_tokens=1 adds one)
    if len(tokens) >= 2 and tokens[-2] == token:
        return len(tokens) - 2
    return None


def _fingerprint(answers: list[Any]) -> str:
    parts = []
    for answer in answers:
        lp = _logprobs(answer) or {}
        values = [None if v is None else round(float(v), FINGERPRINT_DECIMALS) for v in lp.get("token_logprobs") or []]
        parts.append([lp.get("tokens"), values])
    return json_sha256(parts)


def _failed(answers: list[Any], problem: str) -> EndpointCheck:
    return EndpointCheck(False, problem, _fingerprint(answers), [])
