"""What the engine may know of any runner: the seam between a run and whatever computes its requests.

A runner is an lm-eval `LM` (`lm_eval.api.model.LM`: loglikelihood, loglikelihood_rolling,
generate_until, apply_chat_template, tokenizer_name, ...) that also says what decides its results
besides a request (`cache_namespace`: the identity request-cache keys are made of), reads and
writes results through a request cache once one is attached (`attach_request_cache`; see
`RequestCache.through`), and reports the work it did (`report`). The engine uses nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.request_cache import RequestCache


@dataclass
class WorkStats:
    """Work a runner actually did (env.json's "runner" section; benchmarks read it)."""

    tokens_computed: int = 0  # tokens (not padding) run through the model
    forward_passes: int = 0
    loglikelihood_seconds: float = 0.0
    decode_row_steps: int = 0  # rows run through decoding steps after the prefill (finished rows run no more)
    requests_from_cache: int = 0
    requests_computed: int = 0
    max_batch_requests: int = 0
    truncated_requests: int = 0  # prompts longer than the context window, left-truncated as lm-eval does
    # the computed requests' own tokens, whatever the runner shared between them (efficiency figures)
    prompt_tokens: int = 0  # input tokens as the model reads them (after truncation)
    generated_tokens: int = 0

    def forward_pass(self, tokens: int) -> None:
        """One more forward pass, computing `tokens` tokens that are not padding."""
        self.tokens_computed += tokens
        self.forward_passes += 1

    def decoding_step(self, rows: int) -> None:
        self.decode_row_steps += rows

    def looked_up(self, from_cache: int, computed: int) -> None:
        """Requests answered by the request cache, and those left to compute."""
        self.requests_from_cache += from_cache
        self.requests_computed += computed

    def batch(self, requests: int) -> None:
        self.max_batch_requests = max(self.max_batch_requests, requests)

    def truncated(self, requests: int) -> None:
        self.truncated_requests += requests

    def requests_read(self, prompt_tokens: int, generated_tokens: int = 0) -> None:
        """Computed requests' input tokens and the tokens generated for them (each request counted)."""
        self.prompt_tokens += prompt_tokens
        self.generated_tokens += generated_tokens

    def scored_for(self, seconds: float) -> None:
        self.loglikelihood_seconds += seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TokenUsage:
    """Tokens a server billed (the `usage` of its answers), summed over the requests sent."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0  # answers that carried a usage

    def add(self, usage: dict[str, Any] | None) -> None:
        if not isinstance(usage, dict):
            return
        self.requests += 1
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage.get(name)
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Latency:
    """Seconds from sending a request to its whole answer, over the requests that succeeded."""

    requests: int
    p50_s: float
    p95_s: float
    mean_s: float
    max_s: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency | None:
        if not seconds:
            return None
        ordered = sorted(seconds)

        def quantile(q: float) -> float:  # nearest rank
            return round(ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))], 4)

        return cls(
            len(ordered), quantile(0.5), quantile(0.95), round(sum(ordered) / len(ordered), 4), round(ordered[-1], 4)
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class RunnerReport:
    """What a runner tells the run record once the requests are done."""

    work: WorkStats
    generation: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task: settings used and their origin
    max_length: int | None = None  # context window requests were cut to
    request_cache: str | None = None  # path of the attached request cache, if any
    interrupted_in_flight: int = 0  # requests earlier, killed runs lost in flight (computed again)
    served: dict[str, Any] | None = None  # a served model: server, model name, fingerprint, endpoint check
    usage: TokenUsage | None = None  # a served model: tokens its answers billed
    latency: Latency | None = None  # a served model: request latency
    # a served runner's latency of each computed request, in seconds, in the order they finished (the
    # run so far): the engine takes each task's stretch of it for the percentiles in the record
    latencies_s: tuple[float, ...] = ()

    def env_record(self) -> dict[str, Any]:
        """env.json's "runner" section."""
        record = self.work.to_dict()
        if self.request_cache is not None:
            record["request_cache"] = self.request_cache
            record["interrupted_in_flight"] = self.interrupted_in_flight
        if self.served is not None:
            record["served"] = self.served
        if self.usage is not None:
            record["usage"] = self.usage.to_dict()
        if self.latency is not None:
            record["latency"] = self.latency.to_dict()
        return record


@runtime_checkable
class Runner(Protocol):
    """The engine's view of a runner (besides lm-eval's LM methods, which lm-eval itself calls)."""

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]: ...

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]: ...

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]: ...

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str: ...

    @property
    def tokenizer_name(self) -> str: ...

    def cache_namespace(self) -> dict[str, Any]:
        """What, besides a request, decides its result (the model, its settings): request-cache identity."""
        ...

    def attach_request_cache(self, cache: RequestCache) -> int:
        """Read and write results through `cache` from now on; returns the requests runs lost in flight."""
        ...

    def report(self) -> RunnerReport: ...


def refused_tasks(runner: Any, tasks: list) -> tuple[list, dict[str, str]]:
    """The tasks a runner can score, and why it refuses the others (its `refusal(output_type)`, where
    it has one: a served model whose log-probabilities fail the endpoint check still generates).
    A group goes as a whole when it holds a refused task."""
    refusal = getattr(runner, "refusal", None)
    if refusal is None:
        return tasks, {}
    kept, refused = [], {}
    for obj in tasks:
        group = hasattr(obj, "get_all_tasks")
        leaves = obj.get_all_tasks(recursive=True) if group else [obj]
        why = next((w for w in (refusal(t.config.output_type) for t in leaves) if w), None)
        if why is None:
            kept.append(obj)
        else:
            refused[obj.name if group else obj.config.task] = why
    return kept, refused
