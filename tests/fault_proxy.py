"""A fault-injecting HTTP proxy in front of a real server, for the served-model fault tests.

It runs an asyncio loop in a thread of the test process, speaks HTTP/1.1 itself (keep-alive
included) so that it can misbehave at the byte level, and forwards everything it does not spoil to
the upstream server through aiohttp. Faults are scripted by rules:

    proxy.inject("429", every=3, retry_after=1)   # every 3rd request gets a 429 with Retry-After
    proxy.inject("stall", next=2, seconds=20)     # the next 2 requests get no answer for 20 s
    proxy.inject("500", every=1, after=40)         # the first 40 pass, every one after fails

Kinds: `429` (Retry-After), `500`, `stall` (no byte for `seconds`, then the connection closes),
`truncate` (the upstream answer's headers with its full Content-Length, half its body, then the
connection closes), `drop` (the connection closes once the request is read) and `malformed` (200 with
a body that is no JSON). Rules apply to the scoring endpoints (/v1/completions,
/v1/chat/completions) unless `paths=` says otherwise; the first rule that fires wins. Besides
faults the proxy can demand a key (`api_key=`: 401 otherwise) and hide `/v1/models`
(`models=False`: 404, as a server without the route answers). `counts` tells what happened.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from dataclasses import dataclass

import aiohttp

SCORING_PATHS = ("/v1/completions", "/v1/chat/completions")
KINDS = ("429", "500", "stall", "truncate", "drop", "malformed")
REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}
# response headers of the upstream that describe the body as sent, which this proxy re-frames
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


@dataclass
class Rule:
    kind: str
    every: int | None = None
    next: int | None = None
    paths: tuple[str, ...] = SCORING_PATHS
    after: int = 0  # let this many matching requests through first
    retry_after: float = 1.0
    seconds: float = 30.0
    seen: int = 0
    fired: int = 0

    def fires(self, path: str) -> bool:
        if not path.startswith(self.paths):
            return False
        self.seen += 1
        counted = self.seen - self.after
        if counted <= 0:
            return False
        if self.next is not None:
            hit = self.fired < self.next
        else:
            assert self.every is not None
            hit = counted % self.every == 0
        self.fired += hit
        return hit


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool = True


def _error_body(message: str, kind: str, code: int) -> bytes:
    # the shape OpenAI and vLLM answer errors in
    return json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()


class FaultProxy:
    """`FaultProxy(upstream)` listens on 127.0.0.1 at once; `.base_url` is its …/v1; `close()` ends it.
    `upstream` is the real server's base URL (http://HOST:PORT/v1 or without /v1)."""

    def __init__(self, upstream: str, *, api_key: str | None = None, models: bool = True) -> None:
        root = upstream.rstrip("/")
        self.upstream = root[: -len("/v1")] if root.endswith("/v1") else root
        self.api_key = api_key
        self.models = models
        self.rules: list[Rule] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._server, self._session = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(30)
        self.port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ the script
    def inject(self, kind: str, *, every: int | None = None, next: int | None = None, **options) -> Rule:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}: one of {', '.join(KINDS)}")
        if (every is None) == (next is None):
            raise ValueError("say every=k or next=n")
        rule = Rule(kind, every=every, next=next, **options)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _fault_for(self, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.fires(path):
                    self.counts[rule.kind] += 1
                    return rule
        return None

    # ------------------------------------------------------------------ lifetime
    async def _open(self) -> tuple[asyncio.Server, aiohttp.ClientSession]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = await asyncio.start_server(self._connection, sock=sock)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return server, session

    async def _shut(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                with self._lock:
                    self.counts["requests"] += 1
                if not await self._answer(request, writer) or not request.keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # close(): ended, not failed (3.11's streams would log a cancelled task as an error)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to close (a fault did that)."""
        path = request.path.split("?")[0]
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            body = _error_body("Incorrect API key provided.", "invalid_request_error", 401)
            await _respond(writer, 401, body)
            return True
        if not self.models and path.rstrip("/") == "/v1/models":
            await _respond(writer, 404, b'{"detail":"Not Found"}')
            return True
        rule = self._fault_for(path)
        if rule is not None and rule.kind in ("429", "500"):
            status = int(rule.kind)
            headers = {"Retry-After": f"{rule.retry_after:g}"} if status == 429 else {}
            message = "Rate limit reached: retry later." if status == 429 else "Internal server error (injected)."
            await _respond(writer, status, _error_body(message, "server_error", status), headers)
            return True
        if rule is not None and rule.kind == "drop":
            return False
        if rule is not None and rule.kind == "stall":
            await asyncio.sleep(rule.seconds)
            return False
        status, headers, body = await self._forward(request)
        if rule is not None and rule.kind == "malformed":
            await _respond(writer, 200, b'{"id": "cmpl-injected", "choices": [{"text": "', {})
            return True
        if rule is not None and rule.kind == "truncate":
            await _respond(writer, status, body, headers, send=len(body) // 2)
            return False
        await _respond(writer, status, body, headers)
        return True

    async def _forward(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length", "connection")}
        try:
            async with self._session.request(
                request.method, self.upstream + request.path, headers=headers, data=request.body or None
            ) as r:
                body = await r.read()
                kept = {k: v for k, v in r.headers.items() if k.lower() not in HOP_HEADERS}
                with self._lock:
                    self.counts["forwarded"] += 1
                return r.status, kept, body
        except aiohttp.ClientError as exc:
            # what a reverse proxy answers when the server behind it is gone
            return 502, {}, _error_body(f"upstream unreachable: {exc}", "bad_gateway", 502)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed a kept-alive connection
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    return Request(method, path, headers, body, keep_alive)


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    send: int | None = None,
) -> None:
    """Status, headers with the whole body's Content-Length, then `send` bytes of the body (all)."""
    out = {"content-type": "application/json"}
    out.update((k.lower(), v) for k, v in (headers or {}).items())
    out["content-length"] = str(len(body))
    head = f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in out.items()) + "\r\n"
    writer.write(head.encode("latin-1") + body[: len(body) if send is None else send])
    await writer.drain()
