"""The request cache as a runner without batches uses it (an HTTP client answering one request at a
time): k requests marked in flight, each result committed as it arrives, a kill losing only those out."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from harness.request_cache import RequestCache

REPO = Path(__file__).resolve().parents[1]


def in_flight(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COALESCE(SUM(requests), 0) FROM inflight").fetchone()[0]
    finally:
        db.close()


def test_results_are_written_as_they_arrive_and_the_in_flight_count_follows(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = RequestCache(path, namespace={"model": "served"})
    keys = [cache.key("generate_until", f"prompt {i}", {}) for i in range(5)]
    cache.add(keys[1], "generate_until", "from an earlier run")
    cache.commit()
    seen = []  # after each result: (results written, requests still marked in flight)

    def compute(todo, sink):
        sink.started(len(todo))
        seen.append((len(cache), in_flight(path)))
        out = []
        for n, i in enumerate(todo):
            out.append(f"answer {i}")
            sink.add(i, out[-1])
            sink.commit(len(todo) - n - 1)
            seen.append((len(cache), in_flight(path)))
        return out

    tally = []
    results = cache.through("generate_until", keys, compute, tally=lambda *counts: tally.append(counts))
    assert results == ["answer 0", "from an earlier run", "answer 2", "answer 3", "answer 4"]
    assert tally == [(1, 4)]
    assert seen == [(1, 4), (2, 3), (3, 2), (4, 1), (5, 0)]
    # a second pass reads everything back (JSON: decode restores what JSON cannot hold)
    again = RequestCache(path, namespace={"model": "served"})
    assert again.through("generate_until", keys, lambda todo, sink: [], decode=str.upper) == [
        r.upper() for r in results
    ]
    assert again.claim_interrupted() == 0


def test_a_killed_runner_loses_only_the_requests_still_in_flight(tmp_path):
    path = tmp_path / "cache.sqlite"
    script = f"""
import os
from harness.request_cache import RequestCache
cache = RequestCache({str(path)!r}, namespace={{"model": "served"}})
keys = [cache.key("generate_until", f"prompt {{i}}", {{}}) for i in range(5)]
def compute(todo, sink):
    sink.started(len(todo))
    sink.add(todo[0], "first")
    sink.commit(len(todo) - 1)
    sink.add(todo[1], "second")
    sink.commit(len(todo) - 2)
    os._exit(9)  # killed while three requests are out
cache.through("generate_until", keys, compute)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 9, proc.stderr
    cache = RequestCache(path, namespace={"model": "served"})
    keys = [cache.key("generate_until", f"prompt {i}", {}) for i in range(5)]
    assert list(cache.lookup(keys).values()) == ["first", "second"]
    assert cache.claim_interrupted() == 3
    assert cache.claim_interrupted() == 0  # counted once
