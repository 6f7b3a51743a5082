"""What a run cost, per task and in all: requests, tokens, model time and what follows from them.

env.json keeps `efficiency: {"run": {...}, "tasks": {task: {...}}}` (written by the engine from the
runner's work, measured task by task: harness.models.metering); here each entry is an `Efficiency`.
Runs stored before it existed have none, and load as they always did.

Tokens count each computed request's own input and output, whatever the runner shared between
requests (that saving shows in `tokens_computed`); requests answered by the request cache cost no
model time and count no tokens. So `tokens_per_second` holds for any mix, and `seconds_per_1k_docs`
scales the computed requests' time to all of the task's requests (exact when none came from the cache).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# the derived figures, written beside the counts for readers without harness
DERIVED = ("tokens_per_second", "seconds_per_1k_docs")
# a task's figures on each of its rows of harness.load_runs (empty for runs stored before harness kept them)
EFFICIENCY_COLUMNS = (
    "device",
    "prompt_tokens",
    "generated_tokens",
    "model_seconds",
    "tokens_per_second",
    "seconds_per_1k_docs",
    "latency_p50_s",
    "latency_p95_s",
)


@dataclass(frozen=True)
class Efficiency:
    """Work and time of a task's requests (or a group's, or the run's: the sum of its tasks)."""

    requests: int = 0
    requests_computed: int = 0
    requests_from_cache: int = 0
    prompt_tokens: int = 0  # input tokens of the computed requests, as the model read them
    generated_tokens: int = 0
    tokens_computed: int = 0  # tokens the model actually ran (shared prefixes once)
    model_seconds: float = 0.0  # wall time inside the runner for these requests
    documents: int | None = None
    device: str | None = None
    latency_p50_s: float | None = None  # served models: per-request latency percentiles
    latency_p95_s: float | None = None

    @property
    def tokens_per_second(self) -> float | None:
        """Prompt and generated tokens per second of model time."""
        tokens = self.prompt_tokens + self.generated_tokens
        return tokens / self.model_seconds if self.model_seconds > 0 and tokens else None

    @property
    def seconds_per_1k_docs(self) -> float | None:
        """Model seconds per 1,000 documents, the computed requests' time scaled to all requests."""
        if not self.requests_computed or not self.documents or self.model_seconds <= 0:
            return None
        return self.model_seconds / self.requests_computed * self.requests / self.documents * 1000

    @property
    def from_cache(self) -> bool:
        """Every request came from the request cache: no figure of time to show."""
        return self.requests > 0 and self.requests_computed == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), **{name: getattr(self, name) for name in DERIVED}}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Efficiency | None:
        """An entry of env.json (keys it does not know, derived figures included, are ignored)."""
        if not isinstance(raw, Mapping):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def total(parts: Iterable[Efficiency], documents: int | None = None) -> Efficiency | None:
    """The sum of several tasks' figures (a group's, a run's); latency percentiles do not add up,
    so a sum has none; the device is kept where all parts share it."""
    parts = list(parts)
    if not parts:
        return None
    devices = {p.device for p in parts}
    docs = [p.documents for p in parts]
    return Efficiency(
        requests=sum(p.requests for p in parts),
        requests_computed=sum(p.requests_computed for p in parts),
        requests_from_cache=sum(p.requests_from_cache for p in parts),
        prompt_tokens=sum(p.prompt_tokens for p in parts),
        generated_tokens=sum(p.generated_tokens for p in parts),
        tokens_computed=sum(p.tokens_computed for p in parts),
        model_seconds=sum(p.model_seconds for p in parts),
        documents=documents if documents is not None else (sum(docs) if None not in docs else None),  # type: ignore[arg-type]
        device=devices.pop() if len(devices) == 1 else None,
    )


def efficiency_values(e: Efficiency | None) -> tuple:
    """EFFICIENCY_COLUMNS of a task (Nones without figures; no time figures when all came from the cache)."""
    if e is None:
        return (None,) * len(EFFICIENCY_COLUMNS)
    timed = not e.from_cache
    return (
        e.device,
        e.prompt_tokens,
        e.generated_tokens,
        e.model_seconds if timed else None,
        e.tokens_per_second,
        e.seconds_per_1k_docs,
        e.latency_p50_s,
        e.latency_p95_s,
    )
