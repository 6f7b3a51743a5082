"""Generation requests for a served model: lm-eval's generation_kwargs as completions or chat payloads.

The payload is lm-eval local-completions' (`max_tokens`, `temperature` 0 unless sampling, every stop
string plus EOS, `seed`), with the other sampling settings passed by their OpenAI/vLLM names. Stop
strings are also cut client-side, so a server that honours only the first four (OpenAI's limit)
gives the same text. Sampled repeats of one prompt (self-consistency) go as one request with `n`.
"""

from __future__ import annotations

import json
from typing import Any

from harness.errors import BadOptionError
from harness.lm_eval_compat import handle_stop_sequences, normalize_gen_kwargs
from harness.models.generation import (
    FROM_LM_EVAL,
    FROM_OFF,
    FROM_REQUEST,
    FROM_RUN_SEED,
    canonical_gen_kwargs,
    check_gen_kwargs,
)

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's API models' default
# generation_kwargs passed on under these names (vLLM takes top_k, min_p, repetition_penalty, min_tokens)
PASSED = {
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "repetition_penalty": "repetition_penalty",
    "min_new_tokens": "min_tokens",
}
CHAT_MARKER = '[{"role"'


def settings_of(gen_kwargs: dict[str, Any], eos: str | None, run_seed: int, where: str) -> dict[str, Any]:
    """The payload fields of one group of requests and, under "origin", who set each."""
    kwargs = canonical_gen_kwargs(dict(gen_kwargs))
    check_gen_kwargs(kwargs, where)
    given = set(kwargs)
    norm = dict(normalize_gen_kwargs(kwargs, DEFAULT_MAX_GEN_TOKS))
    if (norm.get("num_beams") or 1) > 1:
        raise BadOptionError(f"{where}: num_beams > 1 is not supported by OpenAI-compatible servers")
    do_sample = bool(norm.get("do_sample"))
    out: dict[str, Any] = {
        "max_tokens": int(norm["max_gen_toks"]),
        "temperature": float(norm.get("temperature") or 0.0) if do_sample else 0.0,
        "stop": list(handle_stop_sequences(norm.get("until"), eos=eos)),
        "seed": int(kwargs["seed"]) if kwargs.get("seed") is not None else run_seed,
    }
    if do_sample and "temperature" not in given:
        out["temperature"] = 1.0  # do_sample without a temperature: sample (lm-eval's API models would not)
    origin = {
        "max_tokens": FROM_REQUEST if "max_gen_toks" in given else FROM_LM_EVAL,
        "temperature": FROM_REQUEST if "temperature" in given or "do_sample" in given else FROM_LM_EVAL,
        "stop": FROM_REQUEST if "until" in given else FROM_LM_EVAL,
        "seed": FROM_REQUEST if kwargs.get("seed") is not None else FROM_RUN_SEED,
    }
    for key, name in PASSED.items():
        if norm.get(key) is not None:
            out[name], origin[name] = norm[key], FROM_REQUEST
    for key in ("frequency_penalty", "presence_penalty"):
        origin.setdefault(key, FROM_OFF)
    out["do_sample"] = do_sample
    return {"payload": out, "origin": origin}


def record(settings: dict[str, Any]) -> dict[str, Any]:
    """The run record's view of settings_of(): settings used and their origin."""
    used = dict(settings["payload"])
    return {"settings": used, "origin": {k: settings["origin"].get(k, FROM_REQUEST) for k in used}}


def completions_payload(model: str, prompt: Any, settings: dict[str, Any], n: int) -> dict[str, Any]:
    payload = {k: v for k, v in settings["payload"].items() if k != "do_sample"}
    payload.update(model=model, prompt=prompt)
    if n > 1:
        payload["n"] = n
    return payload


def chat_payload(model: str, prompt: str, settings: dict[str, Any], n: int) -> dict[str, Any]:
    payload = {k: v for k, v in settings["payload"].items() if k != "do_sample"}
    payload.update(model=model, messages=messages_of(prompt))
    if n > 1:
        payload["n"] = n
    return payload


def messages_of(prompt: str) -> list[dict[str, str]]:
    """A chat history made by chat_history_prompt(), or a plain prompt as one user message."""
    if prompt.startswith(CHAT_MARKER):
        try:
            messages = json.loads(prompt)
            if isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages):
                return messages
        except ValueError:
            pass
    return [{"role": "user", "content": prompt}]


def chat_history_prompt(chat_history: list[dict[str, str]]) -> str:
    """What apply_chat_template gives lm-eval under the chat API: the history itself, as JSON (the
    server applies its own template); messages_of() reads it back."""
    return json.dumps(chat_history, ensure_ascii=False)


def texts_of(answer: Any, chat: bool) -> list[str | None]:
    """The generated texts of an answer, in choice order (None where a choice has none)."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list):
        return []
    out: list[str | None] = []
    for choice in sorted((c for c in choices if isinstance(c, dict)), key=lambda c: c.get("index", 0)):
        text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
        out.append(text if isinstance(text, str) else None)
    return out


def cut_at_stops(text: str, stops: list[str]) -> str:
    """text up to the first stop string (what a server honouring every stop string returns)."""
    cut = len(text)
    for stop in stops:
        if stop:
            at = text.find(stop)
            if 0 <= at < cut:
                cut = at
    return text[:cut]
