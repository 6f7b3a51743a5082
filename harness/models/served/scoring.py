"""Log-likelihoods from a completions endpoint, with as few requests as the numbers allow.

A request's score is lm-eval local-completions': the prompt (context + continuation, left-cut to the
context window) is echoed with `logprobs`, and the continuation's echoed log-probabilities are
summed; it is greedy when each is its position's best. Three savings, none of which changes a
number: identical inputs are sent once; several prompts go in one request (the API takes a list);
and the one-token continuations of one context (multiple-choice letters) are read off a single
request for the context's next-token `top_logprobs`; a choice not among them gets a request that
forces it with `logit_bias` (checked once a run against its echo), else an echo. The endpoint
check has verified that a top_logprobs entry equals the echoed value.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.models.served.client import Client, ServerError, Session

ECHO_PROMPTS_PER_REQUEST = 8
NEXT_TOKEN_TOP = 20  # vLLM's default --max-logprobs
FORCED_TOLERANCE = 1e-4  # a forced token's log-probability against the echoed one (vLLM: equal)


@dataclass
class Unit:
    """One input to compute, and the requests (indices) that take its result."""

    prompt: Any  # token ids, or text in text-offsets mode
    ctxlen: int  # tokens of context (or characters, in text mode)
    members: list[int] = field(default_factory=list)


class Scorer:
    """Scores (prompt, ctxlen) units through one client; on_result(members, (logprob, greedy)) as each arrives."""

    def __init__(self, client: Client, model: str, seed: int, *, next_token_fast_path: bool = True) -> None:
        self.client, self.model, self.seed = client, model, seed
        self.fast_path = next_token_fast_path
        self._spelling: dict[int, str | None] = {}
        self.top = NEXT_TOKEN_TOP
        self.requests_sent = 0
        self.list_prompts = True  # several prompts a request, until a server refuses a list
        self.bias_ok: bool | None = None  # whether forced tokens' log-probabilities equal echoed ones
        self._bias_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ planning
    def run(self, units: list[Unit], text: bool, on_result: Callable[[list[int], tuple[float, bool]], None]) -> None:
        echo: list[Unit] = []
        by_context: dict[tuple, list[Unit]] = defaultdict(list)
        for unit in units:
            if not text and self.fast_path and len(unit.prompt) - unit.ctxlen == 1 and unit.ctxlen > 0:
                by_context[tuple(unit.prompt[:-1])].append(unit)
            else:
                echo.append(unit)
        groups = [group for group in by_context.values() if len(group) > 1]
        echo += [group[0] for group in by_context.values() if len(group) == 1]
        if groups:
            self._learn_spellings({u.prompt[-1] for group in groups for u in group})
        calls: list[Callable[[Session], Any]] = []

        def next_token(group: list[Unit]) -> Callable[[Session], Any]:
            async def call(session: Session) -> None:
                carries = sum(len(u.members) for u in group)
                answer = await session.call(
                    "POST", "completions", self._next_payload(group[0].prompt[:-1]), carries=carries
                )
                self.requests_sent += 1
                top = _top_of_next(self.client, answer)
                best = max(top.values()) if top else None
                missing = []
                for unit in group:
                    spelled = self._spelling.get(unit.prompt[-1])
                    if spelled is None or spelled not in top:
                        missing.append(unit)
                        continue
                    on_result(unit.members, (top[spelled], top[spelled] >= best))  # type: ignore[operator]
                if missing:  # choices outside the top_logprobs returned
                    await self._outside_top(session, missing, on_result)

            return call

        if self.top <= 0:  # the server takes no top_logprobs: echo all
            echo += [u for group in groups for u in group]
            groups = []
        calls += [next_token(group) for group in groups]
        calls += self._echo_calls(echo, text, on_result)
        if calls:
            self._bias_lock = None  # a lock belongs to one event loop: run_all starts a new one
            self.client.run_all(calls)

    def _echo_calls(self, units: list[Unit], text: bool, on_result: Callable) -> list[Callable[[Session], Any]]:
        units = sorted(units, key=lambda u: -len(u.prompt))  # similar lengths in one request
        per_request = 1 if text else ECHO_PROMPTS_PER_REQUEST
        chunks = [units[i : i + per_request] for i in range(0, len(units), per_request)]

        def echo(chunk: list[Unit]) -> Callable[[Session], Any]:
            return lambda session: self._echo_chunk(session, chunk, text, on_result)

        return [echo(chunk) for chunk in chunks]

    async def _outside_top(self, session: Session, units: list[Unit], on_result: Callable) -> None:
        """One-token choices missing from the context's top_logprobs. Where the server reports a
        generated token's raw log-probability (vLLM does), a request forcing that token with
        logit_bias gives it without echoing the prompt (and reuses the server's prefix cache);
        the first such value of a run is checked against the echoed one, and a server that
        disagrees gets echo requests from then on."""
        if self._bias_lock is None:
            self._bias_lock = asyncio.Lock()
        if self.bias_ok is None:
            async with self._bias_lock:
                if self.bias_ok is None:
                    first, units = units[0], units[1:]
                    forced = await self._forced(session, first)
                    choice = _choices(self.client, await self._echo(session, first.prompt, [first]), 1)[0]
                    echoed = _score_choice(self.client, choice, first.ctxlen, False)
                    self.bias_ok = forced is not None and abs(forced[0] - echoed[0]) <= FORCED_TOLERANCE
                    on_result(first.members, echoed)
        if not self.bias_ok:
            if units:
                await self._echo_chunk(session, units, False, on_result)
            return
        for unit in units:
            forced = await self._forced(session, unit)
            if forced is None:
                await self._echo_chunk(session, [unit], False, on_result)
            else:
                on_result(unit.members, forced)

    async def _forced(self, session: Session, unit: Unit) -> tuple[float, bool] | None:
        """(log p(token), False) from a request that forces unit's one-token continuation; None if
        the server generated another token. Never greedy: it was outside the top_logprobs."""
        payload = dict(self._next_payload(unit.prompt[:-1]), logprobs=1, logit_bias={str(unit.prompt[-1]): 100})
        answer = await session.call("POST", "completions", payload, carries=len(unit.members))
        self.requests_sent += 1
        lp = _choices(self.client, answer, 1)[0].get("logprobs") or {}
        tokens, values = lp.get("tokens") or [], lp.get("token_logprobs") or []
        if not tokens or not values or values[0] is None or tokens[0] != self._spelling.get(unit.prompt[-1]):
            return None
        return float(values[0]), False

    async def _echo_chunk(self, session: Session, chunk: list[Unit], text: bool, on_result: Callable) -> None:
        """Echo chunk's prompts in one request (one a request for servers that refuse a list)."""
        answer = None
        if len(chunk) > 1 and self.list_prompts:
            try:
                answer = await self._echo(session, [u.prompt for u in chunk], chunk)
            except ServerError as exc:
                if exc.status not in (400, 422):
                    raise
                self.list_prompts = False  # a server that takes one prompt a request
        if answer is None:
            for unit in chunk:
                choice = _choices(self.client, await self._echo(session, unit.prompt, [unit]), 1)[0]
                on_result(unit.members, _score_choice(self.client, choice, unit.ctxlen, text))
            return
        for unit, choice in zip(chunk, _choices(self.client, answer, len(chunk))):
            on_result(unit.members, _score_choice(self.client, choice, unit.ctxlen, text))

    async def _echo(self, session: Session, prompt: Any, units: list[Unit]) -> Any:
        carries = sum(len(u.members) for u in units)
        answer = await session.call("POST", "completions", self._echo_payload(prompt, 1), carries=carries)
        self.requests_sent += 1
        return answer

    # ------------------------------------------------------------------ payloads
    def _echo_payload(self, prompt: Any, logprobs: int) -> dict[str, Any]:
        # lm-eval local-completions' payload: one generated token rides along (max_tokens 0 is refused by some servers)
        return {
            "model": self.model,
            "prompt": prompt,
            "temperature": 0,
            "max_tokens": 1,
            "logprobs": logprobs,
            "seed": self.seed,
            "echo": True,
        }

    def _next_payload(self, context: list[int]) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": context,
            "temperature": 0,
            "max_tokens": 1,
            "logprobs": self.top,
            "seed": self.seed,
        }

    def _learn_spellings(self, ids: set[int]) -> None:
        """How the server spells each token id in top_logprobs (its echo of the ids says): ids that two
        tokens spell alike are left to echo."""
        todo = sorted(i for i in ids if i not in self._spelling)
        if not todo:
            return
        try:
            answer = self.client.post("completions", self._echo_payload(todo, self.top))
        except ServerError:
            self.top = 5  # a server with a smaller top_logprobs limit (OpenAI's is 5)
            try:
                answer = self.client.post("completions", self._echo_payload(todo, self.top))
            except ServerError:
                self.top = 0
                return
        lp = (_choices(self.client, answer, 1)[0].get("logprobs") or {}) if answer else {}
        tokens = lp.get("tokens") or []
        if len(tokens) != len(todo) + 1:  # one per id, and the generated token
            self._spelling.update(dict.fromkeys(todo))
            return
        counts: dict[str, int] = defaultdict(int)
        for tok in tokens[:-1]:
            counts[tok] += 1
        for i, tok in zip(todo, tokens):
            self._spelling[i] = tok if counts[tok] == 1 else None


def _choices(client: Client, answer: Any, n: int) -> list[dict[str, Any]]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or len(choices) != n or not all(isinstance(c, dict) for c in choices):
        raise ServerError(f"server {client.shown} answered completions with {_count(choices)} choices for {n} prompts")
    return sorted(choices, key=lambda c: c.get("index", 0))


def _count(choices: Any) -> str:
    return str(len(choices)) if isinstance(choices, list) else "no"


def _top_of_next(client: Client, answer: Any) -> dict[str, float]:
    lp = _choices(client, answer, 1)[0].get("logprobs") or {}
    tops = lp.get("top_logprobs") or [None]
    return tops[0] if isinstance(tops[0], dict) else {}


def _score_choice(client: Client, choice: dict[str, Any], ctxlen: int, text: bool) -> tuple[float, bool]:
    """lm-eval's parse_logprobs for one echoed prompt (the last position is the generated token)."""
    lp = choice.get("logprobs") or {}
    values, tops = lp.get("token_logprobs"), lp.get("top_logprobs")
    if not isinstance(values, list) or not isinstance(tops, list):
        raise ServerError(f"server {client.shown} echoed a prompt without token_logprobs and top_logprobs")
    if text:  # ctxlen is a count of characters: the continuation's tokens start at or after it
        offsets = lp.get("text_offset") or []
        tokens = lp.get("tokens") or []
        ends = [o + len(t) for o, t in zip(offsets, tokens)]
        start = next((i for i, end in enumerate(ends) if end > ctxlen), len(values) - 1)
        ctxlen = max(1, start)
    scored, top = values[ctxlen:-1], tops[ctxlen:-1]
    if any(v is None for v in scored):
        raise ServerError(f"server {client.shown} echoed a prompt with missing log-probabilities")
    greedy = all(isinstance(t, dict) and t and v >= max(t.values()) for v, t in zip(scored, top))
    return float(sum(scored)), greedy
