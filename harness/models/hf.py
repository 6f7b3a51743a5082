"""The transformers runner: lm-eval's `LM` interface over any causal LM, registered as `harness-hf`.

Tokenisation follows lm-eval's hf backend exactly (TemplateLM's context/continuation split, the
BOS rules of HFLM.tok_encode, its rolling windows), so the numbers are lm-eval's. What differs is
how little work it does: identical inputs are computed once, an input that is a prefix of another
is read off the longer one's forward pass, batches are length-sorted, and only the positions that
are scored go through the LM head (Gemma's 262k-word head over every position costs gigabytes).

This module is the LM face and the orchestration; the rooms it runs are prefix_plan (which
forward passes), scoring (the scoring pass), kv_cache (KV-cache views), decoding (generation),
batching (slices, memory, out-of-memory halving), rolling (perplexity windows) and parallel (data parallel).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from harness.errors import UserError
from harness.lm_eval_compat import configure_pad_token, has_bos_prefix, resolve_max_length
from harness.models import generating
from harness.models.attention import use_blocked_attention
from harness.models.batching import DEFAULT_BATCH_SIZE, Batcher, parse_batch_size
from harness.models.catalog import LoadedModel, load_model
from harness.models.decoding import Decoder
from harness.models.generation import DEFAULT_SEED, GenerationSettings, resolve_generation
from harness.models.kv_cache import KVCaches, PrefixCaches
from harness.models.metering import TaskWork
from harness.models.parallel import DataParallel, distributed_state
from harness.models.prefix_plan import PACK_MAX_TOKENS, PackLimit, ScoringPlan
from harness.models.rolling import DocumentSums, rolling_windows
from harness.models.runner import RunnerReport, WorkStats
from harness.models.scoring import Scorer, ScoringJob, ScoringPass
from harness.request_cache import NO_SINK, RequestCache, ResultSink, SinkView

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048  # HFLM._DEFAULT_MAX_LENGTH, used when neither config nor tokenizer says


@register_model("harness-hf")
class HarnessLM(TemplateLM):
    """Causal transformers model behind lm-eval's LM interface.

    on_scoring_pass(ScoringPass) is called before every scoring forward pass and may raise;
    memory_budget() gives the bytes a batch may use under batch size `auto` (else measured).
    """

    def __init__(
        self,
        pretrained: str | None = None,
        *,
        loaded: LoadedModel | None = None,
        batch_size: int | str | None = DEFAULT_BATCH_SIZE,
        gen_batch_size: int | str | None = "auto",
        device: str | None = None,
        dtype: str | None = None,
        max_length: int | None = None,
        add_bos_token: bool | None = None,
        max_gen_toks: int = 256,
        compile: bool = False,
        seed: int = DEFAULT_SEED,
        pack_max_tokens: int = PACK_MAX_TOKENS,
        request_cache: RequestCache | None = None,
        on_scoring_pass: Callable[[ScoringPass], None] | None = None,
        memory_budget: Callable[[], int] | None = None,
        **_ignored: Any,  # lm-eval passes max_batch_size etc. to every model
    ) -> None:
        super().__init__()
        self.parallel = DataParallel(distributed_state())  # see parallel.py
        if loaded is None:
            if pretrained is None:
                raise UserError("harness-hf needs pretrained=<alias, path or hub id>")
            if device and device.startswith("cuda") and not torch.cuda.is_available():
                # lm-eval's CLI asks for cuda unless told otherwise
                log.warning("device %s requested but CUDA is not available: using the CPU", device)
                device = None
            loaded = load_model(pretrained, device=device, dtype=dtype)
        self.loaded = loaded
        self.model = loaded.model
        use_blocked_attention(self.model)  # CPU: about half the attention work (see attention.py)
        if compile and not hasattr(self.model.forward, "_torchdynamo_orig_callable"):
            # one-time cost (minutes on a few CPU cores); pays off on long GPU runs
            self.model.forward = torch.compile(self.model.forward, dynamic=True)
        self.tokenizer = configure_pad_token(loaded.tokenizer, model_config=self.model.config)
        self.add_bos_token = add_bos_token
        self._max_length = max_length
        self._max_gen_toks = max_gen_toks
        self.seed = int(seed)  # sampling seed of requests whose generation_kwargs give none
        self.pack_max_tokens = int(pack_max_tokens)  # 0: never pack, every shared prefix gets a cached pass
        self.work = WorkStats()
        self.kv = KVCaches(self.model, self.work)
        # generation sizes its batches by memory (continuous.py) unless told a number
        self.gen_batch_size = parse_batch_size(gen_batch_size, default="auto")
        self.batcher = Batcher(self.model, parse_batch_size(batch_size), self.parallel, self.work, memory_budget)
        self.scorer = Scorer(self.model, self.tokenizer, self.kv, self.work, on_scoring_pass)
        self.decoder = Decoder(self.model, self.tokenizer, self.kv, self.work)
        # per task: the generation settings used and where each came from (the run record reads it)
        self._generation_used: dict[str, dict[str, Any]] = {}
        # results of requests already computed, by this run or an earlier one (see harness.request_cache)
        self.request_cache = request_cache
        self._interrupted = 0
        # each task's share of generation batches several tasks shared (set by a TaskMeter; generating.py)
        self.task_work: dict[str, TaskWork] | None = None

    @property
    def tasks_share_batches(self) -> tuple[str, ...]:
        """Request kinds whose calls a TaskMeter hands over whole, every task mixed (see generating.py)."""
        return ("generate_until",) if self.parallel.size == 1 else ()

    # ---------------------------------------------------------------- identity, limits, the run record
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        if self.tokenizer.bos_token_id is not None:
            return self.tokenizer.bos_token_id
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length or resolve_max_length(self.model.config, self.tokenizer, default=DEFAULT_MAX_LENGTH)

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def get_model_info(self) -> dict:
        return {"harness_model": self.loaded.identity}

    def attach_request_cache(self, cache: RequestCache) -> int:
        """Read and write results through cache from now on; returns how many requests interrupted
        runs lost in flight (counted by the main process only)."""
        cache.use_namespace(self.cache_namespace())
        self.request_cache = cache
        self._interrupted = cache.claim_interrupted() if self.parallel.main else 0
        if self._interrupted:
            log.warning("an interrupted run lost %d requests in flight: they are computed again", self._interrupted)
        return self._interrupted

    def cache_namespace(self) -> dict[str, Any]:
        """What, besides a request, decides its result: the weights, dtype, device type and tokenisation."""
        identity = self.loaded.identity
        return {
            "model": {k: identity.get(k) for k in ("sha256", "hub_id", "revision", "adapter")},
            "dtype": str(self.model.dtype),
            "device": self.device.type,
            "max_length": self.max_length,
            "add_bos_token": self.add_bos_token,
            "max_gen_toks": self.max_gen_toks,
        }

    def report(self) -> RunnerReport:
        cache = self.request_cache
        return RunnerReport(
            work=replace(self.work),
            generation=dict(self._generation_used),
            max_length=self.max_length,
            request_cache=str(cache.path) if cache is not None else None,
            interrupted_in_flight=self._interrupted,
        )

    def barrier(self) -> None:
        self.parallel.barrier()

    # ---------------------------------------------------------------- tokenisation (as HFLM)
    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len=None, **kwargs):
        if add_special_tokens is None:
            add_special_tokens = self.add_bos_token
            # a prompt that already starts with BOS (chat templates) must not get a second one
            if has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
                add_special_tokens = False
        special = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        encoding = self.tokenizer.encode(string, **special)
        return encoding[-left_truncate_len:] if left_truncate_len else encoding

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.tokenizer.chat_template:
            raise UserError(
                f"model '{self.loaded.identity.get('name')}' has no chat template: drop --apply-chat-template"
            )
        kwargs = dict(
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )
        try:
            return self.tokenizer.apply_chat_template(chat_history, **kwargs)
        except Exception as exc:  # jinja2 TemplateError: e.g. templates that reject a system role
            if not any(m["role"] == "system" for m in chat_history):
                raise
            log.warning("chat template rejected the system role (%s); dropping it as lm-eval does", exc)
            return self.tokenizer.apply_chat_template([m for m in chat_history if m["role"] != "system"], **kwargs)

    # ---------------------------------------------------------------- the request cache
    def _cached(
        self,
        kind: str,
        key_parts: list[tuple],
        compute: Callable[[list[int], ResultSink], list],
        decode: Callable[[Any], Any] | None = None,
    ) -> list:
        """compute(todo, sink) for the requests (one key_parts entry each: kind, inputs...) that the
        request cache lacks; with no cache, for all of them. Under data parallel the main process's
        view of the cache is every process's, so all plan the same batches."""
        cache = self.request_cache
        if cache is None:  # --no-cache: every request is computed, and counted so
            self.work.looked_up(0, len(key_parts))
            return compute(list(range(len(key_parts))), NO_SINK)
        keys = [cache.key(*parts) for parts in key_parts]
        hits = self.parallel.from_main(cache.lookup(keys) if self.parallel.main else None)
        return cache.through(kind, keys, compute, decode=decode, hits=hits, tally=self.work.looked_up)

    # ---------------------------------------------------------------- scoring
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """Log-likelihood of each (context, continuation): from the request cache, else computed."""
        self.work.truncated(sum(len(ctx) + len(cont) > self.max_length + 1 for _, ctx, cont in requests))
        parts = [
            ("loglikelihood", r[0]) if r[0] is not None else ("loglikelihood-tokens", r[1], r[2]) for r in requests
        ]

        def compute(todo: list[int], sink: ResultSink) -> list:
            return self._score_tokens([requests[i] for i in todo], SinkView(sink, todo), disable_tqdm)

        return self._cached("loglikelihood", parts, compute, decode=tuple)

    def _score_tokens(
        self, requests, sink: ResultSink = NO_SINK, disable_tqdm: bool = False
    ) -> list[tuple[float, bool]]:
        """Score (context, continuation) token pairs, computing every shared prefix once (see prefix_plan)."""
        self.work.requests_read(sum(min(len(ctx) + len(cont) - 1, self.max_length) for _, ctx, cont in requests))
        plan = ScoringPlan(requests, self.max_length, self._pack_limit())
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        pbar = self.parallel.progress(len(requests), disable_tqdm, "loglikelihood")
        started = time.perf_counter()
        caches = PrefixCaches(self.kv)
        for group in plan.groups():
            caches.keep_only(group.prefix)
            job = ScoringJob(self.scorer, group, caches, requests, self.cache_hook, results, sink, pbar)
            self.batcher.run(group.rows, job, pbar, sink, lengths=group.lengths)
        results = self.parallel.gather(results)
        self.work.scored_for(time.perf_counter() - started)
        pbar.close()
        return results  # type: ignore[return-value]

    def _pack_limit(self) -> PackLimit:
        cfg = getattr(self.model.config, "text_config", None) or self.model.config
        return PackLimit(self.pack_max_tokens, self.max_length, getattr(cfg, "sliding_window", None))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Perplexity-style scores: disjoint rolling windows over each document (as HFLM)."""
        strings = [req.args[0] for req in requests]
        return self._cached(
            "loglikelihood_rolling",
            [("loglikelihood_rolling", s) for s in strings],
            lambda todo, sink: self._rolling(strings, todo, sink, disable_tqdm),
        )

    def _rolling(self, strings: list[str], todo: list[int], sink: ResultSink, disable_tqdm: bool) -> list[float]:
        """Total log-likelihood of strings[i] for i in todo, each written to sink once all of its
        windows are scored (all windows of all documents go through one batched scorer)."""
        windows, owner = [], []
        for i in todo:
            for window in rolling_windows(self.tok_encode(strings[i]), self.prefix_token_id, self.max_length):
                windows.append(window)
                owner.append(i)
        sums = DocumentSums(sink, owner)
        for w, (score, _) in enumerate(self._score_tokens(windows, sums, disable_tqdm)):
            sums.scores[w] = score  # under data parallel, the other processes' windows too
        totals = [sums.total(i) for i in todo]
        for i, value in zip(todo, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", (strings[i],), value)
            if i not in sums.written and self.parallel.main:
                sink.add(i, value)  # its windows ran in several processes
        return totals

    # ---------------------------------------------------------------- generation
    def generation_settings(self, gen_kwargs: dict[str, Any], task: str | None = None) -> GenerationSettings:
        """A request's generation_kwargs completed with the runner's defaults (see harness.models.generation)."""
        return resolve_generation(
            gen_kwargs,
            eos=self.tok_decode(self.eot_token_id, skip_special_tokens=False),
            default_max_gen_toks=self.max_gen_toks,
            model_config=getattr(self.model, "generation_config", None),
            run_seed=self.seed,
            where=f"task '{task}' generation_kwargs" if task else "generation_kwargs",
        )

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Batched greedy/sampled generation with lm-eval's stop and cleanup rules.

        A batch's shared preamble (few-shot exemplars) is prefilled once and its KV cache reused
        by every row; prompts are then left-padded after that preamble, as lm-eval pads before it.
        Greedy requests with the same prompt are generated once; sampled ones never are merged:
        each gets its own noise stream, seeded by (seed, task, prompt, repeat number), which is
        also part of its request-cache key. Rows leave the batch as they finish (Decoder.decode).
        """
        groups: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[repr(sorted(req.args[1].items(), key=lambda kv: kv[0]))].append(i)
        # every group's settings are checked before anything is generated
        settings_of = {
            key: self.generation_settings(requests[members[0]].args[1], requests[members[0]].task_name)
            for key, members in groups.items()
        }
        plan: list[tuple[GenerationSettings, tuple, int | None]] = [None] * len(requests)  # type: ignore[list-item]
        for key, members in groups.items():
            settings = settings_of[key]
            for i in members:
                self._generation_used[requests[i].task_name] = settings.record()
            max_ctx_len = self.max_length - settings.max_gen_toks
            if max_ctx_len <= 0:
                raise UserError(
                    f"max_gen_toks={settings.max_gen_toks} leaves no room for a prompt in {self.max_length} tokens"
                )
            # under sampling the n-th identical request (a self-consistency repeat) gets the n-th noise stream
            repeats: dict[tuple, int] = defaultdict(int)
            for i in members:
                # an empty prompt starts from the prefix token, as lm-eval scores an empty context
                encoded = tuple(self.tok_encode(requests[i].args[0])) or (self.prefix_token_id,)
                if len(encoded) > max_ctx_len:
                    encoded = encoded[-max_ctx_len:]
                    self.work.truncated(1)
                seed = None
                if settings.do_sample:
                    ident = (requests[i].task_name, encoded)
                    seed = settings.row_seed(requests[i].task_name, encoded, repeats[ident])
                    repeats[ident] += 1
                plan[i] = (settings, encoded, seed)
        parts = [("generate_until", req.args[0], req.args[1], seed) for req, (_, _, seed) in zip(requests, plan)]
        computed: list[int] = []

        def compute(todo: list[int], sink: ResultSink) -> list[str]:
            computed.extend(todo)
            return generating.generate(self, requests, plan, todo, sink, disable_tqdm)

        results = self._cached("generate_until", parts, compute)
        generating.looked_up(self.task_work, requests, computed)
        return results
