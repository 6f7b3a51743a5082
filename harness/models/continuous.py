"""Continuous batching: a group of generation requests decoded in a batch that stays full.

A request that finishes (EOS, a stop string, max_gen_toks) leaves its slot at once and the next
waiting request takes it: its prompt (after the group's shared preamble, whose keys and values are
computed once and held once) is prefilled into the free slots while the other rows wait a step,
then all decode together. The batch shrinks only when the queue is empty. See slots.py for the KV
layout and the attention.

Why our own and not transformers' `generate_batch` (its continuous batching, paged cache): it
stops at EOS only (no stop strings: BBH's and GSM8K's "Q:" / "\\n\\n" would run on to max tokens), draws
samples from the global torch generator (a sample would depend on its batch mates), and has
neither the OpenAI penalties nor a preamble held once for every row.

Every row's tokens depend on its own prompt and (sampling) its own seeded noise stream only: the
t-th token of a request always uses the t-th draw of its generator, whichever slot and batch mates
it has, so continuous batching changes no sampled output.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.models.attention import NAME as ATTENTION_NAME
from harness.models.decoding import MIN_GEN_PREFIX, GenerationJob, eos_token_ids
from harness.models.generation import GenerationSettings, gumbel_perturbed, penalise, row_generator
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
    lo: int  # first own column (before it: the admission group's left padding)
    base: int  # the column the next fed token is written at
    tokens: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None


class ContinuousDecoder:
    """Decodes one settings group: prompts[i] for i in order, done(i, tokens) as each finishes."""

    def __init__(self, model: Any, tokenizer: Any, work: WorkStats) -> None:
        self.model, self.tokenizer, self.work = model, tokenizer, work
        self.eos_ids = eos_token_ids(model)

    def slots_for(self, rows: int, width: int, batch_size: int | str, budget: Callable[[], int]) -> int:
        """Rows decoded at once: batch_size, or (`auto`) as many as the memory budget holds, capped."""
        if batch_size != "auto":
            return max(1, min(int(batch_size), rows))
        cap = MAX_SLOTS.get(self.model.device.type, MAX_SLOTS["cuda"])
        cfg = getattr(self.model.config, "text_config", None) or self.model.config
        per_slot = SlotBuffers.bytes_per_slot(self.model, width) + 2 * cfg.vocab_size * 8  # + its float64 scores
        return max(1, min(cap, rows, int(budget() * SLOT_SHARE) // per_slot))

    def run_job(self, job: GenerationJob, batch_size: int | str, budget: Callable[[], int], sink: ResultSink) -> None:
        """A GenerationJob's rows, each row's answer committed to the sink as it finishes."""
        waiting = job.requests(list(job.rows))
        sink.started(waiting)

        def done(i: int, tokens: list[int]) -> None:
            nonlocal waiting
            self.work.requests_read(0, len(tokens) * len(job.rows[i]))
            job.finish(i, tokens)
            waiting -= len(job.rows[i])
            sink.commit(waiting)

        self.run(job.encoded, job.order, job.settings, job.row_seed, batch_size, budget, done)

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
    ) -> None:
        ranked = sorted(order, key=lambda i: prompts[i])
        first, last = prompts[ranked[0]], prompts[ranked[-1]]
        # the common prefix of all prompts is that of the lexicographically first and last
        shared = min(common_prefix_len(first, last), min(len(prompts[i]) for i in order) - 1)
        prefix = first[:shared] if shared >= MIN_GEN_PREFIX else ()
        own = {i: prompts[i][len(prefix) :] for i in order}
        width = max(len(s) for s in own.values()) + settings.max_gen_toks
        slots = self.slots_for(len(order), width, batch_size, budget)
        # longest first: an admission group pads its prompts to its longest
        queue = deque(sorted(order, key=lambda i: -len(own[i])))
        while queue:
            try:
                self._decode(prefix, own, queue, settings, seeds, slots, width, done)
            except torch.OutOfMemoryError:
                if slots == 1:
                    raise
                slots //= 2
                log.warning("out of memory while generating: continuing with %d rows", slots)
                if self.model.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _decode(
        self,
        prefix: tuple,
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
        if prefix:
            self._prefill_prefix(prefix, buffers)
        live: list[Row] = []
        try:
            while queue or live:
                if queue and len(live) < slots:
                    rows, logits = self._admit(own, queue, slots - len(live), buffers, len(live), settings, seeds)
                    live += rows
                else:
                    logits = self._step(live, buffers)
                    rows = live
                self._pick(rows, logits, settings)
                finished = [r for r in rows if self._finished(r, settings)]
                for row in finished:
                    done(row.request, row.tokens)
                if finished:
                    live = self._compact(live, set(id(r) for r in finished), buffers)
        except torch.OutOfMemoryError:
            queue.extendleft(reversed([r.request for r in live]))
            raise

    def _prefill_prefix(self, prefix: tuple, buffers: SlotBuffers) -> None:
        """The shared preamble's keys and values, computed once (a slot of its own, then held once)."""
        scratch = SlotBuffers(self.model, 1, len(prefix))
        zero = torch.zeros(1, dtype=torch.long, device=self.model.device)
        scratch.current = Pass(first=0, base=zero, lo=zero)  # the scratch holds no prefix to attend
        ids = torch.tensor([prefix], device=self.model.device)
        positions = torch.arange(len(prefix), device=self.model.device)[None]
        self.model(input_ids=ids, position_ids=positions, use_cache=False, slots=scratch, logits_to_keep=1)
        self.work.forward_pass(len(prefix))
        scratch.take_prefix(0, len(prefix))
        buffers.prefix, buffers.prefix_len = scratch.prefix, scratch.prefix_len

    def _admit(
        self,
        own: dict[int, tuple],
        queue: deque,
        free: int,
        buffers: SlotBuffers,
        first: int,
        settings: GenerationSettings,
        seeds: dict[int, int | None],
    ) -> tuple[list[Row], torch.Tensor]:
        """Prefill the next waiting prompts into slots [first, first + n), left-padded to the longest."""
        longest = len(own[queue[0]])
        n = max(1, min(free, len(queue), PREFILL_TOKENS // max(1, longest)))
        requests = [queue.popleft() for _ in range(n)]
        device = self.model.device
        ids = torch.full((n, longest), self.tokenizer.pad_token_id, dtype=torch.long)
        positions = torch.zeros((n, longest), dtype=torch.long)
        rows = []
        for r, i in enumerate(requests):
            lo = longest - len(own[i])
            ids[r, lo:] = torch.tensor(own[i], dtype=torch.long)
            positions[r, lo:] = torch.arange(buffers.prefix_len, buffers.prefix_len + len(own[i]))
            seed = seeds.get(i)
            generator = row_generator(seed, device) if settings.do_sample and seed is not None else None
            rows.append(Row(request=i, lo=lo, base=longest, generator=generator))
        buffers.current = Pass(
            first=first,
            base=torch.zeros(n, dtype=torch.long, device=device),
            lo=torch.tensor([r.lo for r in rows], device=device),
        )
        out = self.model(
            input_ids=ids.to(device),
            position_ids=positions.to(device),
            use_cache=False,
            slots=buffers,
            logits_to_keep=1,
        )
        self.work.forward_pass(sum(len(own[i]) for i in requests))
        self.work.batch(first + n)
        return rows, out.logits[:, -1]

    def _step(self, live: list[Row], buffers: SlotBuffers) -> torch.Tensor:
        """One decoding step of every live row: its last token in, the next token's logits out."""
        device = self.model.device
        ids = torch.tensor([[r.tokens[-1]] for r in live], device=device)
        positions = torch.tensor([[buffers.prefix_len + r.base - r.lo] for r in live], device=device)
        buffers.current = Pass(
            first=0,
            base=torch.tensor([r.base for r in live], device=device),
            lo=torch.tensor([r.lo for r in live], device=device),
        )
        out = self.model(input_ids=ids, position_ids=positions, use_cache=False, slots=buffers, logits_to_keep=1)
        for r in live:
            r.base += 1
        self.work.forward_pass(len(live))
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
