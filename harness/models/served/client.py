"""Talking to an OpenAI-compatible server: asynchronous requests under an adaptive concurrency limit,
bounded retries, token usage and latency.

aiohttp rather than httpx or the `openai` client: it is already a dependency (lm-eval's API models
use it), it pools connections per event loop without extra configuration, and a bare JSON POST is
all a completions request needs; the `openai` client would add its own retry layer, which must not
stack on ours.

Politeness follows Inspect: start with a few requests in flight, add one each time a window of
requests succeeds, halve on 429/503 and wait for `Retry-After`. Retries (429, 5xx, timeouts,
dropped connections, unreadable bodies) back off exponentially with full jitter. A 4xx other than
429 is the caller's mistake and is not retried: it becomes one line naming the server's message.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from harness.errors import UserError
from harness.models.runner import Latency, TokenUsage

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
START_CONCURRENCY = 4


class ServerError(UserError):
    """A server that cannot be used (unreachable, refusing, answering nonsense): one line, exit 2."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status that ended it, if one did


def display_url(url: str) -> str:
    """url without user:password@ (what records and messages show)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def normalise_base_url(url: str) -> str:
    """http://host:port/v1 from whatever the user gave (a trailing /, /completions, no /v1 ...)."""
    url = url.strip().rstrip("/")
    for tail in ("/chat/completions", "/completions"):
        if url.endswith(tail):
            url = url[: -len(tail)]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"--model {display_url(url)}: not an http(s) URL of a server")
    if not parts.path or parts.path == "/":
        url = url + "/v1"
    return url


class AdaptiveLimit:
    """How many requests may be in flight: grows by one per `limit` successes, halves on a rate limit."""

    def __init__(self, maximum: int, start: int = START_CONCURRENCY) -> None:
        self.maximum = max(1, maximum)
        self.limit = max(1, min(start, self.maximum))
        self.in_flight = 0
        self._streak = 0
        self._cond = asyncio.Condition()
        self.pause_until = 0.0

    async def acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        delay = self.pause_until - time.monotonic()
        if delay > 0:  # a server said Retry-After: nobody sends before then
            await asyncio.sleep(delay)

    async def release(self, outcome: str) -> None:
        async with self._cond:
            self.in_flight -= 1
            if outcome == "ok":
                self._streak += 1
                if self._streak >= self.limit and self.limit < self.maximum:
                    self.limit += 1
                    self._streak = 0
            elif outcome == "rate-limited":
                self.limit = max(1, self.limit // 2)
                self._streak = 0
            self._cond.notify_all()


@dataclass
class Meter:
    """Token usage and per-request latency of the requests a runner sent."""

    usage: TokenUsage = field(default_factory=TokenUsage)
    seconds: list[float] = field(default_factory=list)
    retries: int = 0
    rate_limited: int = 0

    def latency(self) -> Latency | None:
        return Latency.of(self.seconds)


class Client:
    """POSTs and GETs against one base URL (…/v1), the key only in the Authorization header."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        max_concurrency: int = 32,
        timeout: float = 300.0,
        max_retries: int = 5,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.shown = display_url(self.base_url)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.meter = Meter()
        self.outstanding = 0  # evaluation requests in flight (what a kill now would lose)
        self.root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    # ------------------------------------------------------------------ one-shot calls (setup, probes)
    def get(self, path: str, *, missing_ok: bool = False) -> Any:
        return self.run_all([lambda s: self.request(s, "GET", path, missing_ok=missing_ok)])[0]

    def post(self, path: str, payload: dict[str, Any], *, missing_ok: bool = False) -> Any:
        return self.run_all([lambda s: self.request(s, "POST", path, payload, missing_ok=missing_ok)])[0]

    def run_all(self, calls: Sequence[Callable[..., Awaitable[Any]]], on_done: Callable | None = None) -> list[Any]:
        """Run calls(session) concurrently under the adaptive limit; on_done(i, result) as each ends."""
        return asyncio.run(self._run_all(calls, on_done))

    async def _run_all(self, calls: Sequence, on_done: Callable | None) -> list[Any]:
        limit = AdaptiveLimit(self.max_concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(limit=self.max_concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=self._headers) as http:
            session = Session(self, http, limit)
            results: list[Any] = [None] * len(calls)

            async def one(i: int) -> None:
                results[i] = await calls[i](session)
                if on_done is not None:
                    on_done(i, results[i])

            tasks = [asyncio.ensure_future(one(i)) for i in range(len(calls))]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            return results

    async def request(
        self, session: Session, method: str, path: str, payload: dict | None = None, *, missing_ok: bool = False
    ) -> Any:
        return await session.call(method, path, payload, missing_ok=missing_ok)


class Session:
    """One event loop's connection pool and concurrency limit (made by Client.run_all)."""

    def __init__(self, client: Client, http: aiohttp.ClientSession, limit: AdaptiveLimit) -> None:
        self.client, self.http, self.limit = client, http, limit

    async def call(
        self, method: str, path: str, payload: dict | None = None, *, missing_ok: bool = False, carries: int = 0
    ) -> Any:
        """The JSON answer of one request, retried on transient failures; None for a 404 when missing_ok.
        carries: the evaluation requests it answers, counted in `client.outstanding` until it returns."""
        self.client.outstanding += carries
        try:
            return await self._call(method, path, payload, missing_ok)
        finally:
            self.client.outstanding -= carries

    async def _call(self, method: str, path: str, payload: dict | None, missing_ok: bool) -> Any:
        client = self.client
        # "completions" is under the base URL (…/v1); "/tokenize" under the server's root
        url = client.root + path if path.startswith("/") else f"{client.base_url}/{path}"
        attempt = 0
        while True:
            await self.limit.acquire()
            started = time.perf_counter()
            outcome, wait = "failed", None
            try:
                async with self.http.request(method, url, json=payload) as response:
                    body = await response.read()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
                if status < 300:
                    answer = _json(body, client.shown, path)
                    outcome = "ok"
                    if path.endswith("completions"):  # latency and usage of the work, not of /tokenize
                        client.meter.seconds.append(time.perf_counter() - started)
                    if isinstance(answer, dict):
                        client.meter.usage.add(answer.get("usage"))
                    return answer
                if status == 404 and missing_ok:
                    outcome = "ok"
                    return None
                if status in (429, 503):
                    outcome = "rate-limited"
                    client.meter.rate_limited += 1
                    wait = _retry_after(retry_after)
                    if wait is not None:
                        self.limit.pause_until = max(self.limit.pause_until, time.monotonic() + wait)
                if status not in RETRY_STATUS:
                    raise ServerError(_refusal(client.shown, path, status, body), status)
                problem = f"HTTP {status}: {_message(body)}"
            except (aiohttp.ClientConnectorError, aiohttp.InvalidURL) as exc:
                if attempt >= client.max_retries or isinstance(exc, aiohttp.InvalidURL):
                    raise ServerError(f"server {client.shown} cannot be reached ({_reason(exc)})") from None
                problem = f"connection failed ({_reason(exc)})"
            except (aiohttp.ClientError, asyncio.TimeoutError, _Unreadable) as exc:
                problem = f"{'timed out' if isinstance(exc, asyncio.TimeoutError) else _reason(exc)}"
            finally:
                await self.limit.release(outcome)
            if attempt >= client.max_retries:
                raise ServerError(
                    f"server {client.shown} failed {path} after {attempt + 1} attempts: {problem} "
                    "(results so far are kept; run the same command again to go on)"
                )
            attempt += 1
            client.meter.retries += 1
            backoff = random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt))
            await asyncio.sleep(max(backoff, wait or 0.0))


class _Unreadable(Exception):
    """A 2xx answer whose body is not JSON (truncated, or not an API at all): retried, then one line."""


def _json(body: bytes, server: str, path: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Unreadable(f"server {server} answered {path} with a body that is not JSON: {body[:80]!r}") from None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(BACKOFF_MAX_S * 4, max(0.0, float(value)))
    except ValueError:
        return None  # an HTTP date: the backoff decides


def _message(body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
        error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
        text = error.get("message", text) if isinstance(error, dict) else str(error)
    except ValueError:
        pass
    return " ".join(str(text).split())[:200]


def _refusal(server: str, path: str, status: int, body: bytes) -> str:
    if status in (401, 403):
        return f"server {server} refused the API key (HTTP {status}): check the variable --api-key-env names"
    if status == 404:
        return f"server {server} has no {path} (HTTP 404): is this the base URL of an OpenAI-compatible API (…/v1)?"
    return f"server {server} rejected a request to {path} (HTTP {status}): {_message(body)}"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:160]
