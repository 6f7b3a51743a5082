"""Rolling log-likelihood (perplexity tasks): a document's disjoint windows, as lm-eval's HFLM makes
them, and the sink that adds a document's window scores up once all of them are in."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.lm_eval_compat import get_rolling_token_windows, make_disjoint_window
from harness.request_cache import ResultSink


def rolling_windows(tokens: list[int], prefix_token: int, max_length: int) -> list[tuple[None, list, list]]:
    """A document's (None, context, continuation) windows: disjoint, each at most max_length tokens,
    the first after prefix_token (HFLM.loglikelihood_rolling's settings, context_len 1)."""
    windows = get_rolling_token_windows(
        token_list=tokens, prefix_token=prefix_token, max_seq_len=max_length, context_len=1
    )
    return [(None, ctx, cont) for ctx, cont in map(make_disjoint_window, windows)]


class DocumentSums:
    """The sink a document's rolling windows are scored into: each window's score kept, and the
    document's total written to `sink` once all of its windows are in (in window order, whatever
    order they finished in)."""

    def __init__(self, sink: ResultSink, owner: list[int]) -> None:
        self.sink, self.owner = sink, owner
        self.scores: list[float | None] = [None] * len(owner)
        self.windows_of: dict[int, list[int]] = defaultdict(list)
        for w, i in enumerate(owner):
            self.windows_of[i].append(w)
        self.left = {i: len(ws) for i, ws in self.windows_of.items()}
        self.written: set[int] = set()

    def total(self, i: int) -> float:
        return sum(self.scores[w] for w in self.windows_of[i])  # type: ignore[misc]

    def started(self, requests: int) -> None:
        self.sink.started(requests)

    def add(self, index: int, value: Any) -> None:
        self.scores[index] = value[0]
        i = self.owner[index]
        self.left[i] -= 1
        if self.left[i] == 0:
            self.sink.add(i, self.total(i))
            self.written.add(i)

    def commit(self, in_flight: int = 0) -> None:
        self.sink.commit(in_flight)
