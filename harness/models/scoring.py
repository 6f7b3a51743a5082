"""The scoring pass: one right-padded forward pass over a batch of rows (plain or packed prefix
trees, after an optional cached prefix), the LM head on the scored columns alone, and each scored
token's log-probability and greedy flag picked from those logits."""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from harness.models.kv_cache import KVCaches, PrefixCaches
from harness.models.prefix_plan import Row, ScoreGroup
from harness.models.runner import WorkStats
from harness.request_cache import ResultSink

# Rows of logits per log-softmax on the CPU (see Scorer.pick).
LOG_SOFTMAX_ROWS = 16


@dataclass(frozen=True)
class ScoringPass:
    """A scoring forward pass as an observer sees it, just before it runs (see Scorer)."""

    seqs: list[tuple]  # each row's tokens
    wanted: list[list[tuple[int, int]]]  # per row: the (column, token) pairs scored
    layouts: list[list[tuple]]  # per row: its packed layout, [] for a plain row
    cached: int  # tokens of the cached prefix before every row (0: none)


def takes_row_logits(model: Any) -> bool:
    """Whether the model's forward takes a boolean (batch, width) logits_to_keep, running the LM head
    on those positions only. Recent transformers (late 2026) slice with slice_logits_to_keep, which
    reads a boolean mask; older versions and models index hidden_states[:, keep] and would fail."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep

        forward = inspect.getsource(type(getattr(model, "_orig_mod", model)).forward)
        return "slice_logits_to_keep" in forward and "torch.bool" in inspect.getsource(slice_logits_to_keep)
    except (ImportError, OSError, TypeError):
        return False


class Scorer:
    """Scoring forward passes on one model. observer(ScoringPass), when given, is called before each
    pass and may raise (tests inject torch.OutOfMemoryError there: there is no accelerator to run
    out of memory for real)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        kv: KVCaches,
        work: WorkStats,
        observer: Callable[[ScoringPass], None] | None = None,
    ) -> None:
        self.model, self.tokenizer, self.kv, self.work, self.observer = model, tokenizer, kv, work, observer
        self.row_logits = takes_row_logits(model)

    @torch.no_grad()
    def forward_logprobs(
        self,
        seqs: list[tuple],
        wanted: list[list[tuple[int, int]]],
        cache: Any = None,
        layouts: list[list[tuple]] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Right-padded forward pass after an optional shared prefix. wanted[row] lists (column, token)
        pairs; per row, returns each pair's fp32 log-probability and whether the token is the greedy
        one there (both on the CPU). The LM head runs on the wanted columns alone, and the batch's
        scored tokens are picked together (see pick).

        layouts[row], when given and not empty, lays out a packed row: a prefix tree of sequences
        that continue the cached prefix, one (first column, end column, first position, ancestors'
        column spans) per node. A node's tokens see the cached prefix, their ancestors and the
        node's earlier tokens only, at the positions they have in their sequences: the numbers of
        each sequence computed alone.
        """
        cached = cache.get_seq_length() if cache is not None else 0
        if self.observer is not None:
            self.observer(ScoringPass(seqs, wanted, layouts or [[] for _ in seqs], cached))
        device = self.model.device
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq)
        self.work.forward_pass(sum(map(len, seqs)))
        # Right padding needs no mask for a causal model: real positions never attend to pads.
        extra = self.packed_layout(width, cached, layouts) if layouts and any(layouts) else {}
        if cache is not None:
            cache, shared = self.kv.for_rows(cache, len(seqs))
            extra.update(shared)
        keep = [sorted({c for c, _ in pairs}) for pairs in wanted]
        if self.row_logits:  # a boolean (batch, width) mask: exactly the kept positions, row-major
            chosen = torch.zeros((len(seqs), width), dtype=torch.bool)
            for row, cols in enumerate(keep):
                chosen[row, cols] = True
            logits = self.model(
                ids.to(device),
                **self.kv.passing(cache),
                use_cache=cache is not None,
                logits_to_keep=chosen.to(device),
                **extra,
            ).logits  # (kept, vocab)
            first = [0]
            for cols in keep:
                first.append(first[-1] + len(cols))
            flat = [{c: first[row] + j for j, c in enumerate(cols)} for row, cols in enumerate(keep)]
        else:  # older transformers: the same columns in every row
            union = sorted({c for cols in keep for c in cols})
            logits = self.model(
                ids.to(device),
                **self.kv.passing(cache),
                use_cache=cache is not None,
                logits_to_keep=torch.tensor(union, device=device),
                **extra,
            ).logits.flatten(0, 1)
            at = {c: j for j, c in enumerate(union)}
            flat = [{c: row * len(union) + at[c] for c in cols} for row, cols in enumerate(keep)]
        position = [flat[row][c] for row, pairs in enumerate(wanted) for c, _ in pairs]
        token = [t for pairs in wanted for _, t in pairs]
        picked, greedy = self.pick(logits, position, token)
        sizes = [len(pairs) for pairs in wanted]
        return list(zip(picked.cpu().split(sizes), greedy.cpu().split(sizes)))

    @staticmethod
    def pick(logits: torch.Tensor, position: list[int], token: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per (row of logits, token): its log-softmax, and whether it is the row's argmax (max's index
        is, like argmax's, the first maximal one). On the CPU the log-softmax runs LOG_SOFTMAX_ROWS rows
        at a time, each chunk's output freed before the next: a fresh (rows, vocab) output costs as
        much in page faults as the arithmetic; the values are those of one log_softmax and an argmax."""
        device = logits.device
        rows = LOG_SOFTMAX_ROWS if device.type == "cpu" else max(1, logits.shape[0])
        pos, tok = torch.tensor(position, device=device), torch.tensor(token, device=device)
        greedy = logits.max(dim=-1).indices[pos] == tok
        chunks: dict[int, list[int]] = defaultdict(list)  # first row of a chunk -> its pairs
        for k, p in enumerate(position):
            chunks[p - p % rows].append(k)
        picked = torch.empty(len(position), device=device)
        for first, pairs in chunks.items():
            at = torch.tensor(pairs, device=device)
            picked[at] = torch.log_softmax(logits[first : first + rows].float(), dim=-1)[pos[at] - first, tok[at]]
        return picked, greedy

    def packed_layout(self, width: int, cached: int, layouts: list[list[tuple]]) -> dict:
        """position_ids and the 4D additive attention mask of a batch holding packed rows (see
        forward_logprobs): causal in plain rows; in a packed row, each node sees the cached prefix,
        its ancestors' columns and its own earlier columns, at its sequences' positions."""
        positions = torch.arange(cached, cached + width).repeat(len(layouts), 1)
        allowed = torch.ones(width, cached + width, dtype=torch.bool).tril(cached).repeat(len(layouts), 1, 1)
        for row, nodes in enumerate(layouts):
            for first, end, position, ancestors in nodes:
                positions[row, first:end] = torch.arange(position, position + end - first)
                allowed[row, first:end, cached : cached + first] = False
                for a, b in ancestors:
                    allowed[row, first:end, cached + a : cached + b] = True
        dtype = self.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        device = self.model.device
        return {"position_ids": positions.to(device), "attention_mask": mask[:, None].to(device)}


class ScoringJob:
    """One group of a scoring plan (rows after one cached prefix) in batches (see batching.Batcher):
    each batch laid out, scored, and each request's (log-likelihood, greedy) recorded and written."""

    def __init__(
        self,
        scorer: Scorer,
        group: ScoreGroup,
        caches: PrefixCaches,
        pairs: list[tuple],
        cache_hook: Any,
        results: list,
        sink: ResultSink,
        pbar: Any,
    ) -> None:
        self.scorer, self.group, self.caches, self.pairs, self.cache_hook = scorer, group, caches, pairs, cache_hook
        self.results, self.sink, self.pbar = results, sink, pbar

    def shape(self, batch: list[Row]) -> tuple[int, int, int]:
        return self.group.shape(batch)

    def requests(self, batch: list[Row]) -> int:
        return self.group.requests(batch)

    def run(self, batch: list[Row]) -> None:
        packed = self.group.plan.pack(batch)
        scored = self.scorer.forward_logprobs(
            packed.seqs, packed.wanted, self.caches.get(self.group.prefix), layouts=packed.layouts
        )
        for i, row in packed.rows_of.items():
            logprobs, greedy = scored[row]
            start, end = packed.pairs_of[i]
            self.results[i] = result = (float(logprobs[start:end].sum()), bool(greedy[start:end].all()))
            if self.pairs[i][0] is not None:
                self.cache_hook.add_partial("loglikelihood", self.pairs[i][0], result)
            self.sink.add(i, result)
            self.pbar.update(1)
