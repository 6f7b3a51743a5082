"""Results of requests already computed, kept in sqlite so that a killed run resumes where it stopped.

A key names everything that decides a request's result: the model (weights hash, dtype, device
type, context length), the request kind, its inputs, and for sampled generations the noise seed.
It does not name the batch size or the process rank, so any run with the same model reuses it.

A runner reads and writes through the cache with `through(kind, keys, compute)`: cached results
are read, the others computed, and compute writes its results through a `ResultSink`. The sink's
transactions keep a killed run's loss small: `started(n)` marks n requests in flight, `add`
queues a result, and `commit(in_flight)` writes the queued results together with the new
in-flight count (0 clears the marker) in one transaction. The transformers runner marks each batch
when it starts and commits it when it ends; a runner without batches (one request per call to a
server) may mark k requests, then commit each result as it arrives with the count still out. A run
killed at any moment therefore loses at most what was marked in flight, and the next run learns
how many requests that was. WAL mode lets several runs (or the processes of a data-parallel run)
read and write at once.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.errors import UserError
from harness.hashing import json_sha256

# Bump when the runner's numbers change for the same inputs, so that old entries are not reused.
CACHE_FORMAT = 1
_LOOKUP_CHUNK = 500  # sqlite's host-parameter limit is 32766; small chunks keep statements cheap

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS inflight (owner TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
                                     requests INTEGER NOT NULL, started REAL NOT NULL);
"""


class RequestCache:
    """key -> result of one request (JSON), in an sqlite file shared by every run of this user."""

    def __init__(self, path: str | os.PathLike, namespace: dict[str, Any] | None = None):
        self.path = Path(path)
        self.namespace = ""
        if namespace is not None:
            self.use_namespace(namespace)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self._pending: list[tuple[str, str, str, float]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) where several
            # statements must land together
            self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power loss too
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(
                f"request cache {self.path} cannot be opened ({exc}): "
                "remove it, point HARNESS_REQUEST_CACHE elsewhere, or run with --no-cache"
            ) from exc

    def use_namespace(self, namespace: dict[str, Any]) -> None:
        """What every key of this run shares: the model and runner settings that decide results."""
        self.namespace = json_sha256({"format": CACHE_FORMAT, **namespace})

    def key(self, kind: str, *parts: Any) -> str:
        return json_sha256([self.namespace, kind, parts])

    def lookup(self, keys: list[str]) -> dict[str, Any]:
        """The cached results among keys."""
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            rows = self._db.execute(
                f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update((key, json.loads(value)) for key, value in rows)
        return found

    def through(
        self,
        kind: str,
        keys: list[str],
        compute: Callable[[list[int], ResultSink], Sequence[Any]],
        *,
        decode: Callable[[Any], Any] | None = None,
        hits: dict[str, Any] | None = None,
        tally: Callable[[int, int], None] | None = None,
    ) -> list:
        """Results for keys: those in the cache read from it (through `decode`: JSON gives lists
        for tuples), the others from compute(todo, sink), which returns the results of requests
        todo (indices into keys) and writes each through sink (see the module's doc) as it can.

        hits: the cached results among keys when the caller looked them up itself (data parallel:
        the main process's lookup, shared with the others so that all compute the same requests).
        tally(from_cache, computed) is told how many requests were found and how many are computed.
        """
        if hits is None:
            hits = self.lookup(keys)
        todo = [i for i, key in enumerate(keys) if key not in hits]
        if tally is not None:
            tally(len(keys) - len(todo), len(todo))
        results = [(hits[key] if decode is None else decode(hits[key])) if key in hits else None for key in keys]
        if todo:
            for i, value in zip(todo, compute(todo, _Writer(self, kind, keys))):
                results[i] = value
        self.commit()  # results added outside a batch (rolling documents split between processes)
        return results

    def add(self, key: str, kind: str, value: Any) -> None:
        """Queue a result; it is written by the next commit."""
        self._pending.append((key, kind, json.dumps(value), time.time()))

    def mark_in_flight(self, requests: int) -> None:
        """Mark `requests` requests as in flight (a kill now loses them, and the next run counts them)."""
        self._write([], self._marker(requests))

    def commit(self, in_flight: int = 0) -> None:
        """Write the queued results and set the in-flight count (0: clear the marker), in one transaction."""
        self._write(self._pending, self._marker(in_flight) if in_flight else None)
        self._pending = []

    def _marker(self, requests: int) -> tuple:
        return (self._owner, socket.gethostname(), os.getpid(), requests, time.time())

    def _write(self, results: Iterable[tuple], inflight: tuple | None) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO results (key, kind, value, created) VALUES (?, ?, ?, ?)", results)
            if inflight is None:
                db.execute("DELETE FROM inflight WHERE owner = ?", (self._owner,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO inflight (owner, host, pid, requests, started) VALUES (?, ?, ?, ?, ?)",
                    inflight,
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def claim_interrupted(self) -> int:
        """Requests that runs on this host lost in flight when they died (killed, crashed); cleared once counted."""
        host = socket.gethostname()
        dead = [
            (owner, n)
            for owner, pid, n in self._db.execute("SELECT owner, pid, requests FROM inflight WHERE host = ?", (host,))
            if not _alive(pid)
        ]
        for owner, _ in dead:
            self._db.execute("DELETE FROM inflight WHERE owner = ?", (owner,))
        return sum(n for _, n in dead)

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class ResultSink(Protocol):
    """Where a runner's compute writes results as they are ready (see the module's doc)."""

    def started(self, requests: int) -> None:
        """`requests` requests are now in flight."""

    def add(self, index: int, value: Any) -> None:
        """The result of request `index` (of the requests the sink is for)."""

    def commit(self, in_flight: int = 0) -> None:
        """Write what was added; `in_flight` requests are still out."""


class NoSink:
    """The sink of a runner without a request cache: results are returned, never written."""

    def started(self, requests: int) -> None:
        pass

    def add(self, index: int, value: Any) -> None:
        pass

    def commit(self, in_flight: int = 0) -> None:
        pass


NO_SINK = NoSink()


class SinkView:
    """A sink for a subset of another's requests: request j here is request indices[j] there."""

    def __init__(self, sink: ResultSink, indices: list[int]) -> None:
        self.sink, self.indices = sink, indices

    def started(self, requests: int) -> None:
        self.sink.started(requests)

    def add(self, index: int, value: Any) -> None:
        self.sink.add(self.indices[index], value)

    def commit(self, in_flight: int = 0) -> None:
        self.sink.commit(in_flight)


class _Writer:
    """The sink `RequestCache.through` hands compute: request i's result is stored under keys[i]."""

    def __init__(self, cache: RequestCache, kind: str, keys: list[str]) -> None:
        self.cache, self.kind, self.keys = cache, kind, keys

    def started(self, requests: int) -> None:
        self.cache.mark_in_flight(requests)

    def add(self, index: int, value: Any) -> None:
        self.cache.add(self.keys[index], self.kind, value)

    def commit(self, in_flight: int = 0) -> None:
        self.cache.commit(in_flight)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
