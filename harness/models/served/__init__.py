"""Served models: `--model http://HOST:PORT/v1`, any OpenAI-compatible server, behind the runner seam.

Rooms: client (HTTP, adaptive concurrency, retries, usage and latency), endpoint (the model behind
the URL and the endpoint check that fingerprints it), tokens (local tokenizer, the server's
/tokenize, or text offsets), scoring (log-likelihood requests), generate (generation payloads),
runner (`ServedLM`, the LM face and the request cache). `open_served_runner` builds one from a
run's options.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from typing import Any

from harness.errors import BadOptionError

log = logging.getLogger(__name__)

APIS = ("completions", "chat")


def is_served(model: str) -> bool:
    """Whether --model names a server (an http(s) base URL) rather than weights."""
    return model.strip().lower().startswith(("http://", "https://"))


@dataclass(frozen=True)
class ServedOptions:
    """`harness run`'s served-model options (RunSpec fields of the same names)."""

    api: str | None = None  # completions | chat; None: completions where the server has it
    api_model: str | None = None  # None: the only model /v1/models lists
    api_key_env: str | None = None  # the variable holding the key (the key itself is never stored)
    max_concurrency: int = 32
    timeout: float = 300.0
    max_retries: int = 5
    tokenizer: str | None = None  # alias or path of a local tokenizer

    def check(self) -> None:
        if self.api is not None and self.api not in APIS:
            raise BadOptionError(f"--api '{self.api}': use completions or chat")
        if self.max_concurrency < 1:
            raise BadOptionError("--max-concurrency must be 1 or more")
        if not self.timeout > 0:
            raise BadOptionError("--timeout must be positive (seconds)")
        if self.max_retries < 0:
            raise BadOptionError("--max-retries must be 0 or more")

    def api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise BadOptionError(f"--api-key-env {self.api_key_env}: that environment variable is not set")
        return value


def served_options(spec: Any) -> ServedOptions:
    """The served-model options of a RunSpec (its fields of the same names; None: the default)."""
    given = {f.name: getattr(spec, f.name, None) for f in fields(ServedOptions)}
    return ServedOptions(**{k: v for k, v in given.items() if v is not None})


def open_served_runner(model: str, options: ServedOptions, seed: int = 1234) -> Any:
    """Discover the model behind the URL, run the endpoint check, and return a ServedLM (its
    `identity` is the run record's model)."""
    from harness.models.served.client import Client, ServerError
    from harness.models.served.endpoint import check_chat, check_completions, discover
    from harness.models.served.runner import ServedLM
    from harness.models.served.tokens import Tokens

    options.check()
    client = Client(
        model,
        options.api_key(),
        max_concurrency=options.max_concurrency,
        timeout=options.timeout,
        max_retries=options.max_retries,
    )
    served = discover(client, options.api_model)
    api = options.api
    if api == "chat":
        check = check_chat(client, served.name)
    else:
        try:
            check = check_completions(client, served.name)
            api = "completions"
        except ServerError as exc:
            if options.api is not None or exc.status != 404:
                raise
            log.warning("server %s has no completions endpoint: generation goes through chat", client.shown)
            api, check = "chat", check_chat(client, served.name)
    # a failed check is said once, by the engine, with the tasks it stops (ServedLM.refusal)
    tokens = Tokens(client, served.name, options.tokenizer)
    runner = ServedLM(client, served, tokens, check, api=api, seed=seed)
    runner.identity = {
        "name": served.name,
        "source": "served",
        "server": client.shown,
        "api": api,
        "fingerprint": check.fingerprint,
        "sha256": check.fingerprint,  # what run hashes and the leaderboard read as the weights' identity
        "tokenization": tokens.mode,
        "dtype": "served",
        "device": client.shown,  # what the run summary and env.json show as where it ran
    }
    return runner
