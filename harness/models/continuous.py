"""Continuous batching: a group of generation requests decoded in a batch that stays full.

A request that finishes (EOS, a stop string, max_gen_toks) leaves its slot at once and the next
waiting request takes it: its prompt (after its task's preamble, whose keys and values are computed
once and held once) is prefilled into the free slots while the other rows wait a step, then all
decode together. Every task of the call shares the batch (a task's 50 documents alone leave it
half empty as they finish); the batch shrinks only when the queue is empty. See slots.py for the
KV layout and the attention.

Why our own and not transformers' `generate_batch` (its continuous batching, paged cache): it
stops at EOS only (no stop strings: BBH's and GSM8K's "Q:" / "\\n\\n" would run on to max tokens), draws
samples from the global torch generator (a sample would depend on its batch mates), and has
neither the OpenAI penalties nor a preamble held once for every row.

Every row's tokens depend on its own prompt and (sampling) its own seeded noise stream only: the
t-th token of a request always uses the t-th draw of its generator, whichever slot and batch mates
it has; and its logits are the same bits whatever its batch (admission groups of one prompt
length, decode steps over every column, the preamble and the slots' width decided by all the
call's prompts), so continuous batching, the batch size and a resume change no sampled output.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.models.attention import NAME as ATTENTION_NAME
from harness.models.decoding import MIN_GEN_PREFIX, GenerationJob, eos_token_ids
from harness.models.generation import GenerationSettings, gumbel_perturbed, penalise, row_generator
from harness.models.metering import TaskWork
from harness.models.prefix_plan import common_prefix_len
from harness.models.runner import WorkStats
from harness.models.slots import Pass, SlotBuffers
from harness.request_cache import ResultSink

log = logging.getLogger(__name__)

# Rows a generation batch holds at most when memory allows more; a decode step's cost grows slowly
# with its rows until the matrix units are busy (see benchmarks/RESULTS.md for the sizes tried).
MAX_SLOTS = {"cpu": 64, "cuda": 256}
# An admission group's prefill holds at most this many prompt tokens (its activations and scores).
PREFILL_TOKENS = 4096
# Share of the memory budget the slots may take (the rest: activations, logits, the prefix).
SLOT_SHARE = 0.6


def continuous_applies(model: Any) -> bool:
    """The model runs our attention (the `slots` keyword reaches slot_attention) and nothing it
    does not reproduce: no attention logit soft-capping."""
    cfg = getattr(model.config, "text_config", None) or model.config
    return (
        getattr(model.config, "_attn_implementation", None) == ATTENTION_NAME
        and getattr(cfg, "attn_logit_softcapping", None) is None
        and not getattr(model.config, "is_encoder_decoder", False)
    )


@dataclass
class Row:
    request: int
    base: int  # the column the next fed token is written at
    prefix: int = -1  # the preamble it reads (an index into the buffers' prefixes; -1: none)
    prefix_len: int = 0
    tokens: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None


class ContinuousDecoder:
    """Decodes one settings group: prompts[i] for i in order, done(i, tokens) as each finishes."""

    def __init__(self, model: Any, tokenizer: Any, work: WorkStats, task_work: dict[str, TaskWork] | None = None):
        self.model, self.tokenizer, self.work = model, tokenizer, work
        self.eos_ids = eos_token_ids(model)
        # each task's (preamble group's) tokens and model time, where a TaskMeter asks (generating.py)
        self.task_work = task_work
        self.group_of: dict[int, Any] = {}  # request -> its preamble group

    def slots_for(self, rows: int, width: int, batch_size: int | str, budget: Callable[[], int]) -> int:
        """Rows decoded at once: batch_size, or (`auto`) as many as the memory budget holds, capped."""
        if batch_size != "auto":
            return max(1, min(int(batch_size), rows))
        cap = MAX_SLOTS.get(self.model.device.type, MAX_SLOTS["cuda"])
        cfg = getattr(self.model.config, "text_config", None) or self.model.config
        per_slot = SlotBuffers.bytes_per_slot(self.model, width) + 2 * cfg.vocab_size * 8  # + its float64 scores
        return max(1, min(cap, rows, int(budget() * SLOT_SHARE) // per_slot))

    def run_job(
        self,
        job: GenerationJob,
        batch_size: int | str,
        budget: Callable[[], int],
        sink: ResultSink,
        basis: dict[Any, list[tuple]] | None = None,
    ) -> None:
        """A GenerationJob's rows, each row's answer committed to the sink as it finishes; basis: see run."""
        waiting = job.requests(list(job.rows))
        sink.started(waiting)

        def done(i: int, tokens: list[int]) -> None:
            nonlocal waiting
            self.work.requests_read(0, len(tokens) * len(job.rows[i]))
            if self.task_work is not None:
                self.task_work[job.preamble_of(i)].generated_tokens += len(tokens) * len(job.rows[i])
            job.finish(i, tokens)
            waiting -= len(job.rows[i])
            sink.commit(waiting)

        self.run(job.encoded, job.order, job.settings, job.row_seed, batch_size, budget, done, job.preamble_of, basis)

    @torch.no_grad()
    def run(
        self,
        prompts: dict[int, tuple],
        order: list[int],
        settings: GenerationSettings,
        seeds: dict[int, int | None],
        batch_size: int | str,
        budget: Callable[[], int],
        done: Callable[[int, list[int]], None],
        preamble_of: Callable[[int], Any] = lambda i: None,
        basis: dict[Any, list[tuple]] | None = None,
    ) -> None:
        """preamble_of(i): the group of prompts (a task) whose common prefix prompt i shares; each
        group's preamble is computed once and held once, and rows of all groups share the batch.

        basis[group]: the prompts that decide the group's preamble (a superset of its prompts here:
        the call's, those found in the request cache included). Where the preamble ends changes a
        row's logits in their last bits, and under sampling a near tie can then go the other way; so
        the split must not depend on which requests are left to compute, or a resumed run would not
        equal the uninterrupted one. Given the split, a row's logits do not depend on its batch."""
        members: dict[Any, list[int]] = {}
        for i in order:
            self.group_of[i] = preamble_of(i)
            members.setdefault(self.group_of[i], []).append(i)
        prefixes: list[tuple] = []
        prefix_of: dict[int, int] = {}
        own: dict[int, tuple] = {}
        basis = basis or {group: [prompts[i] for i in rows] for group, rows in members.items()}
        preamble = {group: _common_prefix(basis[group]) for group in basis}
        for group, rows in members.items():
            prefix = preamble[group]
            if prefix:
                prefixes.append(prefix)
            for i in rows:
                own[i] = prompts[i][len(prefix) :]
                prefix_of[i] = len(prefixes) - 1 if prefix else -1
        # a decode step attends a slot's every column: its width sets the rounding of the sums
        width = max(len(p) - len(preamble[g]) for g, ps in basis.items() for p in ps) + settings.max_gen_toks
        slots = self.slots_for(len(order), width, batch_size, budget)
        # longest first, so the prompts of one length, which an admission group takes, sit together
        queue = deque(sorted(order, key=lambda i: -len(own[i])))
        while queue:
            try:
                self._decode(prefixes, prefix_of, own, queue, settings, seeds, slots, width, done)
            except torch.OutOfMemoryError:
                if slots == 1:
                    raise
                slots //= 2
                log.warning("out of memory while generating: continuing with %d rows", slots)
                if self.model.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _decode(
        self,
        prefixes: list[tuple],
        prefix_of: dict[int, int],
        own: dict[int, tuple],
        queue: deque,
        settings: GenerationSettings,
        seeds: dict[int, int | None],
        slots: int,
        width: int,
        done: Callable[[int, list[int]], None],
    ) -> None:
        """Decode until the queue is empty; requests still live when it fails go back to the queue."""
        buffers = SlotBuffers(self.model, slots, width)
        readers: dict[int, int] = {}  # a preamble's requests not yet finished
        for i in queue:
            readers[prefix_of[i]] = readers.get(prefix_of[i], 0) + 1
        owner = {prefix_of[i]: self.group_of[i] for i in queue}
        held = {k: self._prefill_prefix(prefixes[k], buffers, owner[k]) for k in sorted(readers) if k >= 0}
        held[-1] = -1
        live: list[Row] = []
        try:
            while queue or live:
                if queue and len(live) < slots:
                    rows, logits = self._admit(
                        own, queue, slots - len(live), buffers, len(live), settings, seeds, lambda i: held[prefix_of[i]]
                    )
                    live += rows
                else:
                    logits = self._step(live, buffers)
                    rows = live
                self._pick(rows, logits, settings)
                finished = [r for r in rows if self._finished(r, settings)]
                for row in finished:
                    done(row.request, row.tokens)
                    readers[prefix_of[row.request]] -= 1
                    if row.prefix >= 0 and not readers[prefix_of[row.request]]:
                        buffers.release_prefix(row.prefix)
                if finished:
                    live = self._compact(live, set(id(r) for r in finished), buffers)
        except torch.OutOfMemoryError:
            queue.extendleft(reversed([r.request for r in live]))
            raise

    def _forward(self, shares: dict[Any, int], **inputs: Any) -> Any:
        """One forward pass; shares: the tokens it computes for each preamble group (task_work's
        model time of the pass is split among them by those tokens)."""
        started = time.perf_counter()
        out = self.model(use_cache=False, logits_to_keep=1, **inputs)
        self.work.forward_pass(sum(shares.values()))
        if self.task_work is not None:
            seconds, total = time.perf_counter() - started, max(1, sum(shares.values()))
            for group, tokens in shares.items():
                self.task_work[group].tokens_computed += tokens
                self.task_work[group].model_seconds += seconds * tokens / total
        return out

    def _prefill_prefix(self, prefix: tuple, buffers: SlotBuffers, group: Any) -> int:
        """A preamble's keys and values, computed once (a slot of its own, then held once); its index."""
        scratch = SlotBuffers(self.model, 1, len(prefix))
        zero = torch.zeros(1, dtype=torch.long, device=self.model.device)
        scratch.current = Pass(first=0, base=zero)  # the scratch holds no prefix to attend
        ids = torch.tensor([prefix], device=self.model.device)
        positions = torch.arange(len(prefix), device=self.model.device)[None]
        self._forward({group: len(prefix)}, input_ids=ids, position_ids=positions, slots=scratch)
        return buffers.hold_prefix(scratch.take_prefix(0, len(prefix)), len(prefix))

    def _admit(
        self,
        own: dict[int, tuple],
        queue: deque,
        free: int,
        buffers: SlotBuffers,
        first: int,
        settings: GenerationSettings,
        seeds: dict[int, int | None],
        held: Callable[[int], int],
    ) -> tuple[list[Row], torch.Tensor]:
        """Prefill the next waiting prompts of the head's length into slots [first, first + n)."""
        length = len(own[queue[0]])
        n = max(1, min(free, len(queue), PREFILL_TOKENS // max(1, length)))
        # prompts of one length only (the queue runs longest first): padding would shift a row's
        # columns, and with them the rounding of its attention sums, so a row's logits would depend
        # on its admission mates
        n = next((k for k in range(1, n) if len(own[queue[k]]) != length), n)
        requests = [queue.popleft() for _ in range(n)]
        device = self.model.device
        ids = torch.tensor([own[i] for i in requests], dtype=torch.long)
        positions = torch.zeros((n, length), dtype=torch.long)
        rows = []
        for r, i in enumerate(requests):
            prefix = held(i)
            before = buffers.prefix_lens[prefix] if prefix >= 0 else 0
            positions[r] = torch.arange(before, before + length)
            seed = seeds.get(i)
            generator = row_generator(seed, device) if settings.do_sample and seed is not None else None
            rows.append(Row(request=i, base=length, prefix=prefix, prefix_len=before, generator=generator))
        buffers.current = Pass.of(
            first, torch.zeros(n, dtype=torch.long, device=device), [r.prefix for r in rows], buffers
        )
        shares: dict[Any, int] = defaultdict(int)
        for i in requests:
            shares[self.group_of[i]] += len(own[i])
        out = self._forward(shares, input_ids=ids.to(device), position_ids=positions.to(device), slots=buffers)
        self.work.batch(first + n)
        return rows, out.logits[:, -1]

    def _step(self, live: list[Row], buffers: SlotBuffers) -> torch.Tensor:
        """One decoding step of every live row: its last token in, the next token's logits out."""
        device = self.model.device
        ids = torch.tensor([[r.tokens[-1]] for r in live], device=device)
        positions = torch.tensor([[r.prefix_len + r.base] for r in live], device=device)
        buffers.current = Pass.of(
            0, torch.tensor([r.base for r in live], device=device), [r.prefix for r in live], buffers
        )
        shares: dict[Any, int] = defaultdict(int)
        for r in live:
            r.base += 1
            shares[self.group_of[r.request]] += 1
        out = self._forward(shares, input_ids=ids, position_ids=positions, slots=buffers)
        self.work.decoding_step(len(live))
        return out.logits[:, -1]

    def _pick(self, rows: list[Row], logits: torch.Tensor, settings: GenerationSettings) -> None:
        """Each row's next token: penalties over its own tokens so far, the warpers, its seeded draw."""
        scores = logits.to(dtype=torch.float32)
        if settings.penalised:
            longest = max(len(r.tokens) for r in rows)
            generated = torch.zeros((len(rows), longest), dtype=torch.long)
            valid = torch.zeros((len(rows), longest), dtype=torch.bool)
            for k, r in enumerate(rows):
                generated[k, : len(r.tokens)] = torch.tensor(r.tokens, dtype=torch.long)
                valid[k, : len(r.tokens)] = True
            scores = penalise(
                scores,
                generated.to(scores.device),
                valid.to(scores.device),
                settings.frequency_penalty,
                settings.presence_penalty,
            )
        if settings.do_sample:
            # the warpers read the scores only, never the tokens so far
            scores = settings.warpers()(None, scores)  # type: ignore[arg-type]
            scores = gumbel_perturbed(scores, [r.generator for r in rows])  # type: ignore[misc]
        for r, token in zip(rows, torch.argmax(scores, dim=-1).tolist()):
            r.tokens.append(token)

    def _finished(self, row: Row, settings: GenerationSettings) -> bool:
        if row.tokens[-1] in self.eos_ids or len(row.tokens) >= settings.max_gen_toks:
            return True
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=False)
        return any(stop in text for stop in settings.until)

    @staticmethod
    def _compact(live: list[Row], finished: set[int], buffers: SlotBuffers) -> list[Row]:
        """Drop finished rows, moving the last live rows into their slots: live rows stay in [0, n)."""
        rows = list(live)
        slot = 0
        while slot < len(rows):
            if id(rows[slot]) in finished:
                last = rows.pop()
                if slot < len(rows):
                    buffers.move(len(rows), slot)
                    rows[slot] = last
                # else: the finished row was the last one
                continue
            slot += 1
        return rows


def _common_prefix(prompts: list[tuple]) -> tuple:
    """The prompts' common prefix where it is long enough to hold once (each prompt keeps one own token)."""
    ranked = sorted(prompts)
    # the common prefix of all prompts is that of the lexicographically first and last
    shared = min(common_prefix_len(ranked[0], ranked[-1]), min(len(p) for p in prompts) - 1)
    return ranked[0][:shared] if shared >= MIN_GEN_PREFIX else ()
