"""The served-model runner: lm-eval's `LM` interface over an OpenAI-compatible server (vLLM, SGLang,
llama.cpp, hosted APIs), behind the runner seam and the request cache.

Numbers are lm-eval local-completions': the same tokenisation (TemplateLM's context/continuation
split, no special tokens), the same window (the server's context length - 1, lm-eval's
`max_length - 1`), the same payloads. Every result is committed to the request cache as its
response arrives, so a killed run or a dead server loses only the requests in flight.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lm_eval.api.model import TemplateLM
from tqdm import tqdm

from harness.errors import UserError
from harness.models.rolling import DocumentSums, rolling_windows
from harness.models.runner import RunnerReport, WorkStats
from harness.models.served import generate as gen
from harness.models.served.client import Client, ServerError, Session
from harness.models.served.endpoint import DEFAULT_CONTEXT, EndpointCheck, ServedModel
from harness.models.served.scoring import ECHO_PROMPTS_PER_REQUEST, Scorer, Unit
from harness.models.served.tokens import Tokens
from harness.request_cache import NO_SINK, RequestCache, ResultSink, SinkView

log = logging.getLogger(__name__)

LOGLIKELIHOOD_TYPES = ("loglikelihood", "multiple_choice", "loglikelihood_rolling")


class ServedLM(TemplateLM):
    """A model behind a base URL, evaluated through its completions (or chat) endpoint."""

    def __init__(
        self,
        client: Client,
        served: ServedModel,
        tokens: Tokens,
        check: EndpointCheck,
        *,
        api: str = "completions",
        seed: int = 1234,
    ) -> None:
        super().__init__()
        self.client, self.served, self.tokens, self.check, self.api = client, served, tokens, check, api
        self.seed = int(seed)
        self.tokenizer = tokens.local  # lm-eval's chat_template() reads it
        self.max_length = (served.max_model_len or DEFAULT_CONTEXT) - 1  # one token rides along (lm-eval's API models)
        self.scorer = Scorer(client, served.name, self.seed)
        self.work = WorkStats()
        self.request_cache: RequestCache | None = None
        self._interrupted = 0
        self._generation_used: dict[str, dict[str, Any]] = {}

    # ---------------------------------------------------------------- the seam
    def refusal(self, output_type: str) -> str | None:
        """Why this runner cannot score tasks of output_type, or None."""
        if output_type not in LOGLIKELIHOOD_TYPES:
            return None
        if self.api == "chat":
            return f"the chat API cannot score log-likelihoods: use --api completions ({self.client.shown}/completions)"
        if not self.check.ok:
            return f"server {self.client.shown} fails the endpoint check: {self.check.problem}"
        if output_type == "loglikelihood_rolling" and (not self.tokens.exact or self.tokens.prefix_token_id is None):
            return "rolling log-likelihood needs tokens and a prefix token: give --tokenizer ALIAS|PATH"
        return None

    def cache_namespace(self) -> dict[str, Any]:
        return {
            "served": self.check.fingerprint,
            "api": self.api,
            "tokens": self.tokens.record(),
            "max_length": self.max_length,
        }

    def attach_request_cache(self, cache: RequestCache) -> int:
        cache.use_namespace(self.cache_namespace())
        self.request_cache = cache
        self._interrupted = cache.claim_interrupted()
        if self._interrupted:
            log.warning("an interrupted run lost %d requests in flight: they are computed again", self._interrupted)
        return self._interrupted

    def served_record(self) -> dict[str, Any]:
        return {
            "server": self.client.shown,
            "model": self.served.name,
            "fingerprint": self.check.fingerprint,
            "api": self.api,
            "tokenization": self.tokens.record(),
            "max_model_len": self.served.max_model_len,
            "endpoint_check": self.check.record(),
            "retries": self.client.meter.retries,
            "rate_limited": self.client.meter.rate_limited,
        }

    def report(self) -> RunnerReport:
        cache = self.request_cache
        return RunnerReport(
            work=replace(self.work),
            generation=dict(self._generation_used),
            max_length=self.max_length,
            request_cache=str(cache.path) if cache is not None else None,
            interrupted_in_flight=self._interrupted,
            served=self.served_record(),
            usage=replace(self.client.meter.usage),
            latency=self.client.meter.latency(),
            latencies_s=tuple(self.client.meter.seconds),
        )

    # ---------------------------------------------------------------- lm-eval's LM face
    @property
    def eot_token_id(self) -> int | None:
        return None if self.tokens.local is None else self.tokens.local.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        if self.tokens.prefix_token_id is None:
            raise UserError("an empty context needs a prefix token: give --tokenizer")
        return self.tokens.prefix_token_id

    @property
    def tokenizer_name(self) -> str:
        return f"served__{self.served.name}".replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tokens.encode(string)

    def tok_decode(self, tokens: list[int], **kwargs: Any) -> str:
        return self.tokens.decode(tokens)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if self.api == "chat":
            return gen.chat_history_prompt(chat_history)
        return self.tokens.apply_chat_template(chat_history, add_generation_prompt)

    # ---------------------------------------------------------------- the request cache
    def _cached(self, kind: str, key_parts: list[tuple], compute: Callable[[list[int], ResultSink], list]) -> list:
        cache = self.request_cache
        if cache is None:
            self.work.looked_up(0, len(key_parts))
            return compute(list(range(len(key_parts))), NO_SINK)
        keys = [cache.key(*parts) for parts in key_parts]
        return cache.through(kind, keys, compute, decode=_decode, tally=self.work.looked_up)

    def _refuse_unless_scorable(self, output_type: str) -> None:
        why = self.refusal(output_type)
        if why is not None:
            raise UserError(why)

    # ---------------------------------------------------------------- log-likelihood
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        self._refuse_unless_scorable("loglikelihood")
        pairs = [req.args for req in requests]
        if not self.tokens.exact:
            parts = [("loglikelihood-text", ctx, cont) for ctx, cont in pairs]
            units = [Unit(ctx + cont, len(ctx)) for ctx, cont in pairs]
            return self._cached(
                "loglikelihood", parts, lambda todo, sink: self._score(units, todo, SinkView(sink, todo), True)
            )
        # the server tokenises everything at once, concurrently, before TemplateLM asks string by string
        strings = []
        for ctx, cont in pairs:
            stripped = ctx.rstrip()
            strings += [stripped, ctx + cont] if ctx else [cont]
        self.tokens.prefetch(strings)
        return super().loglikelihood(requests, disable_tqdm=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        units, parts = [], []
        for _, context_enc, continuation_enc in requests:
            whole = context_enc + continuation_enc
            inp = whole[-self.max_length :]
            ctxlen = len(context_enc) - max(0, len(whole) - self.max_length)
            if len(inp) < len(whole):
                self.work.truncated(1)
            units.append(Unit(inp, ctxlen))
            parts.append(("loglikelihood-tokens", inp, ctxlen))
        return self._cached(
            "loglikelihood", parts, lambda todo, sink: self._score(units, todo, SinkView(sink, todo), False)
        )

    def _score(self, units: list[Unit], todo: list[int], sink: ResultSink, text: bool) -> list[tuple[float, bool]]:
        """Results of units[i], i in todo, each identical input computed once; each written to sink
        (as position j of todo) the moment its response arrives."""
        distinct: dict[tuple, Unit] = {}
        for j, i in enumerate(todo):
            unit = units[i]
            key = (tuple(unit.prompt) if not text else unit.prompt, unit.ctxlen)
            distinct.setdefault(key, Unit(unit.prompt, unit.ctxlen)).members.append(j)
        results: list[tuple[float, bool] | None] = [None] * len(todo)
        progress = _Progress(len(todo), "loglikelihood", self.scorer, sink)
        sink.started(min(len(todo), self.client.max_concurrency * ECHO_PROMPTS_PER_REQUEST))

        def on_result(members: list[int], value: tuple[float, bool]) -> None:
            for j in members:
                results[j] = value
                sink.add(j, value)
            progress.done(len(members))

        started = time.perf_counter()
        try:
            self.scorer.run(list(distinct.values()), text, on_result)
        finally:
            progress.close()
            self.work.scored_for(time.perf_counter() - started)
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        self._refuse_unless_scorable("loglikelihood_rolling")
        strings = [req.args[0] for req in requests]
        self.tokens.prefetch(strings)

        def compute(todo: list[int], sink: ResultSink) -> list[float]:
            windows, owner = [], []
            for j, i in enumerate(todo):
                # lm-eval's API models: windows of max_length - 1 after the prefix token
                for _, ctx, cont in rolling_windows(
                    self.tok_encode(strings[i]), self.prefix_token_id, self.max_length - 1
                ):
                    windows.append(Unit(ctx + cont, len(ctx)))
                    owner.append(j)
            sums = DocumentSums(SinkView(sink, todo), owner)
            for w, (score, _) in enumerate(self._score(windows, list(range(len(windows))), sums, False)):
                sums.scores[w] = score
            return [sums.total(j) for j in range(len(todo))]

        return self._cached("loglikelihood_rolling", [("loglikelihood_rolling", s) for s in strings], compute)

    # ---------------------------------------------------------------- generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        chat = self.api == "chat"
        groups: dict[str, dict[str, Any]] = {}
        plan = []
        repeats: dict[tuple, int] = defaultdict(int)
        for req in requests:
            prompt, kwargs = req.args[0], req.args[1]
            key = repr(sorted(kwargs.items(), key=lambda kv: kv[0]))
            if key not in groups:
                where = f"task '{req.task_name}' generation_kwargs" if req.task_name else "generation_kwargs"
                groups[key] = gen.settings_of(kwargs, self.tokens.eos_string, self.seed, where)
            settings = groups[key]
            self._generation_used[req.task_name] = gen.record(settings)
            repeat = 0
            if settings["payload"]["do_sample"]:  # the n-th identical sampled request is the n-th sample
                repeat = repeats[(key, prompt)]
                repeats[(key, prompt)] += 1
            plan.append((prompt, key, repeat))
        if not chat and self.tokens.exact:
            self.tokens.prefetch(list(dict.fromkeys(p for p, _, _ in plan)))
        parts = [("generate_until", self.api, prompt, groups[key]["payload"], repeat) for prompt, key, repeat in plan]

        def compute(todo: list[int], sink: ResultSink) -> list[str]:
            return self._generate(plan, groups, todo, SinkView(sink, todo), chat)

        return self._cached("generate_until", parts, compute)

    def _generate(self, plan: list, groups: dict, todo: list[int], sink: ResultSink, chat: bool) -> list[str]:
        # one request per distinct (prompt, settings); sampled repeats of it ride in that request as n
        jobs: dict[tuple, list[tuple[int, int]]] = defaultdict(list)  # (prompt, key) -> [(position in todo, repeat)]
        for j, i in enumerate(todo):
            prompt, key, repeat = plan[i]
            jobs[(prompt, key)].append((j, repeat))
        results: list[str | None] = [None] * len(todo)
        progress = _Progress(len(todo), "generate_until", self.scorer, sink)
        sink.started(min(len(todo), self.client.max_concurrency))

        def job(prompt: str, key: str, members: list[tuple[int, int]]) -> Callable[[Session], Any]:
            settings = groups[key]
            sampled = settings["payload"]["do_sample"]
            n = len({r for _, r in members}) if sampled else 1

            async def call(session: Session) -> None:
                if chat:
                    payload = gen.chat_payload(self.served.name, prompt, settings, n)
                    path = "chat/completions"
                else:
                    payload = gen.completions_payload(self.served.name, self._prompt_of(prompt, settings), settings, n)
                    path = "completions"
                texts = gen.texts_of(await session.call("POST", path, payload, carries=len(members)), chat)
                self.scorer.requests_sent += 1
                while sampled and len(texts) < n:  # a server that ignores n: one more request per sample
                    one = dict(payload, n=1, seed=payload["seed"] + len(texts))
                    texts += gen.texts_of(await session.call("POST", path, one, carries=len(members)), chat)[:1]
                if len(texts) < n or any(t is None for t in texts[:n]):
                    raise ServerError(f"server {self.client.shown} answered {path} without the generated text")
                stops = settings["payload"]["stop"]
                for j, repeat in members:
                    text = gen.cut_at_stops(texts[repeat if sampled else 0], stops)  # type: ignore[arg-type]
                    results[j] = text
                    sink.add(j, text)
                progress.done(len(members))

            return call

        try:
            self.client.run_all([job(prompt, key, members) for (prompt, key), members in jobs.items()])
        finally:
            progress.close()
        return results  # type: ignore[return-value]

    def _prompt_of(self, prompt: str, settings: dict[str, Any]) -> Any:
        """Token ids cut to leave room for max_tokens (lm-eval's API models), or the text without tokens."""
        if not self.tokens.exact:
            return prompt
        ids = self.tokens.encode(prompt)
        room = self.max_length - settings["payload"]["max_tokens"]
        if room <= 0:
            raise UserError(
                f"max_gen_toks={settings['payload']['max_tokens']} leaves no room in {self.max_length} tokens"
            )
        if len(ids) > room:
            self.work.truncated(1)
        return ids[-room:]


class _Progress:
    """A progress bar over requests with the server's requests per second; commits the sink as results
    arrive (the cache then holds every answered request, with the rest marked in flight)."""

    def __init__(self, total: int, desc: str, scorer: Scorer, sink: ResultSink) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True)
        self.scorer, self.sink, self.total, self.count = scorer, sink, total, 0
        self.started = time.perf_counter()
        self.sent0 = scorer.requests_sent

    def done(self, n: int) -> None:
        self.count += n
        # the answered request's own results are in: what is still out is the others' (carried)
        self.sink.commit(in_flight=max(0, self.scorer.client.outstanding - n))
        elapsed = max(1e-6, time.perf_counter() - self.started)
        self.bar.set_postfix_str(f"{(self.scorer.requests_sent - self.sent0) / elapsed:.1f} http/s", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _decode(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
