"""How a served model's prompts are split into tokens: a local tokenizer (`--tokenizer`), else the
server's `/tokenize` (vLLM and SGLang have one), else none: requests go as text, and a
continuation's tokens are found by the echoed tokens' character offsets.

With tokens, requests go to the server as token ids (as lm-eval's local-completions sends them), so
the context/continuation split is exact; the run record says which of the three was used.
"""

from __future__ import annotations

import logging
from typing import Any

from harness.errors import UserError
from harness.hashing import json_sha256
from harness.models.served.client import Client

log = logging.getLogger(__name__)

LOCAL, SERVER, TEXT = "local tokenizer", "server /tokenize", "text offsets"


class Tokens:
    """encode/decode for one served model; `mode` says where the tokens come from."""

    def __init__(self, client: Client, model: str, tokenizer: str | None) -> None:
        self.client, self.model = client, model
        self.local: Any = None
        self.identity: dict[str, Any] = {}
        self._memo: dict[str, list[int]] = {}
        self.prefix_token_id: int | None = None
        self.eos_string: str | None = None
        if tokenizer:
            self.local = load_tokenizer(tokenizer)
            self.mode = LOCAL
            tok = self.local
            self.prefix_token_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            self.eos_string = tok.eos_token
            self.identity = {"tokenizer": tokenizer, "vocab_sha256": json_sha256(sorted(tok.get_vocab().items()))}
        elif self._server_tokenizes():
            self.mode = SERVER
            self._learn_special_tokens()
        else:
            self.mode = TEXT

    @property
    def exact(self) -> bool:
        return self.mode != TEXT

    def _server_tokenizes(self) -> bool:
        answer = self.client.post(
            "/tokenize", {"model": self.model, "prompt": "Hello", "add_special_tokens": False}, missing_ok=True
        )
        return isinstance(answer, dict) and isinstance(answer.get("tokens"), list)

    def _learn_special_tokens(self) -> None:
        """BOS (else EOS) as the prefix token and EOS as a stop string, as lm-eval's API models take
        them from the tokenizer: from the server's /tokenizer_info where it has one, else the
        token its tokenizer adds to an empty prompt."""
        info = self.client.get("/tokenizer_info", missing_ok=True)
        named = {}
        if isinstance(info, dict):
            for role in ("bos_token", "eos_token"):
                value = info.get(role)
                value = value.get("content") if isinstance(value, dict) else value
                if isinstance(value, str) and value:
                    named[role] = value
        self.eos_string = named.get("eos_token")
        for role in ("bos_token", "eos_token"):
            if role in named:
                ids = self._tokenize_remote([named[role]])[0]
                if len(ids) == 1:
                    self.prefix_token_id = ids[0]
                    return
        with_special = self._tokenize_remote([""], add_special_tokens=True)[0]
        self.prefix_token_id = with_special[0] if with_special else None

    def prefetch(self, strings: list[str]) -> None:
        """Tokenise strings at once (concurrently on the server) so that encode() later finds them."""
        if self.mode != SERVER:
            return
        todo = list(dict.fromkeys(s for s in strings if s not in self._memo))
        for string, ids in zip(todo, self._tokenize_remote(todo)):
            self._memo[string] = ids

    def encode(self, string: str) -> list[int]:
        """The string's token ids without special tokens (lm-eval's API models add none)."""
        if self.mode == LOCAL:
            return self.local(string, add_special_tokens=False, return_attention_mask=False).input_ids
        if self.mode == SERVER:
            if string not in self._memo:
                self.prefetch([string])
            return self._memo[string]
        raise UserError("this request needs tokens: give --tokenizer (the server has no /tokenize)")

    def decode(self, ids: list[int]) -> str:
        if self.mode == LOCAL:
            return self.local.decode(ids)
        answer = self.client.post("/detokenize", {"model": self.model, "tokens": ids})
        return answer["prompt"]

    def _tokenize_remote(self, strings: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        calls = [
            lambda s, text=text: s.call(
                "POST", "/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": add_special_tokens}
            )
            for text in strings
        ]
        answers = self.client.run_all(calls)
        out = []
        for answer in answers:
            if not isinstance(answer, dict) or not isinstance(answer.get("tokens"), list):
                raise UserError(f"server {self.client.shown} answered /tokenize without a token list")
            out.append([int(t) for t in answer["tokens"]])
        return out

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool) -> str:
        if self.local is None or not getattr(self.local, "chat_template", None):
            raise UserError(
                "--apply-chat-template on the completions API needs --tokenizer with a chat template "
                "(or use --api chat: the server applies its own)"
            )
        return self.local.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    def record(self) -> dict[str, Any]:
        return {"mode": self.mode, **self.identity}


def load_tokenizer(name: str) -> Any:
    """A transformers tokenizer from an alias (its converted folder), a local path or a hub id."""
    import transformers

    from harness.models.catalog import resolve_weights

    try:
        where, _ = resolve_weights(name)
        return transformers.AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as exc:
        raise UserError(f"--tokenizer '{name}' could not be loaded: {str(exc).splitlines()[0]}") from exc
