"""Batching: slices of a runner's work, bounded by padding and by memory, never crashing on memory.

The batch size is a positive integer, or `auto`: as many rows as the memory budget allows, up to
AUTO_MAX_BATCH. A slice that runs out of accelerator memory is halved and retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch
from tqdm import tqdm

from harness.errors import BadOptionError
from harness.models.parallel import DataParallel
from harness.models.prefix_plan import TOKENS_PER_BATCH_ROW
from harness.models.runner import WorkStats
from harness.request_cache import ResultSink

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8
AUTO_MAX_BATCH = 64  # `auto` starts here and shrinks to what memory allows
# Scoring batches stop growing where padding would pass this fraction of their tokens.
MAX_PAD_FRACTION = 0.1
# ... and, once they hold batch_size * TOKENS_PER_BATCH_ROW tokens (long rows run about as fast per
# token in a few rows as in many), where it would pass this one.
FULL_PAD_FRACTION = 0.025


def parse_batch_size(value: int | str | None, default: int | str = DEFAULT_BATCH_SIZE) -> int | str:
    """`--batch-size` (or lm-eval's batch_size model argument): a positive integer or `auto`
    (lm-eval's `auto:N` is `auto`); None or empty: the default."""
    if value is None or str(value).strip() == "":
        return default
    text = str(value).strip().lower()
    if text == "auto" or text.startswith("auto:"):
        return "auto"
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise BadOptionError(f"--batch-size '{value}': expected a positive integer or 'auto'")
    return size


class BatchJob(Protocol):
    """Work that runs in slices of its items (see Batcher.run)."""

    def shape(self, batch: list) -> tuple[int, int, int]:
        """A slice's new tokens per row, cached tokens before them, scored positions per row."""
        ...

    def requests(self, batch: list) -> int:
        """Requests a slice answers (the progress bar and the in-flight marker count them)."""
        ...

    def run(self, batch: list) -> None: ...


class Batcher:
    """Runs jobs in slices. memory_budget() (bytes a batch may use) replaces the measured budget of
    batch size `auto` when given (tests give one)."""

    def __init__(
        self,
        model: Any,
        batch_size: int | str,
        parallel: DataParallel,
        work: WorkStats,
        memory_budget: Callable[[], int] | None = None,
    ) -> None:
        self.model, self.parallel, self.work = model, parallel, work
        self.auto = batch_size == "auto"
        self.batch_size = AUTO_MAX_BATCH if self.auto else int(batch_size)
        self.ran_out_of_memory = False  # then batches hold batch_size rows at most, however short
        self._budget = memory_budget
        self._agreed_budget: int | None = None

    def run(self, items: list, job: BatchJob, pbar: tqdm, sink: ResultSink, lengths: list[int] | None = None) -> None:
        """job.run() on consecutive slices of items.

        A slice holds batch_size items; with batch size `auto`, as many as the memory budget allows
        (see job.shape). A slice that runs out of accelerator memory is halved and retried, and later
        slices start smaller (under data parallel, where every process must plan the same slices,
        only that slice is split).

        With `lengths` (the items' row lengths, longest first), a slice also ends early where
        padding to its first row would exceed MAX_PAD_FRACTION of its tokens: a long row among
        short ones runs in a smaller batch rather than making the others pad up to it. A slice of
        short rows takes more than batch_size of them, up to batch_size * TOKENS_PER_BATCH_ROW
        tokens (a pass of a few hundred tokens leaves the matrix units idle; never after running
        out of memory); a slice that already holds that many tokens (long rows) ends where padding
        would pass FULL_PAD_FRACTION: more rows would add padding, not speed.

        Under data parallel every process plans the same slices and runs its own; the progress bar
        counts the others' slices as done as it passes them.

        Each slice is marked in flight in sink before it runs, and its results are committed when it
        finishes: a run killed at any moment loses that slice only.
        """
        i = 0
        while i < len(items):
            size = min(self.batch_size, len(items) - i)
            if lengths is not None:
                size = self._bounded_by_padding(lengths, i, size, len(items))
            if self.auto:
                budget = self.memory_budget()
                while size > 1 and self.batch_bytes(size, *job.shape(items[i : i + size])) > budget:
                    size //= 2
            batch = items[i : i + size]
            if self.parallel.size > 1:
                if self.parallel.mine():
                    self._recorded(batch, job, sink, split_on_oom=True)
                else:  # another process runs it (progress shown as if done)
                    pbar.update(job.requests(batch))
                i += size
                continue
            try:
                self._recorded(batch, job, sink)
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                self.batch_size, self.ran_out_of_memory = max(1, min(self.batch_size, size // 2)), True
                log.warning("out of memory at batch size %d: continuing with %d", size, self.batch_size)
                self._free_memory()
                continue
            i += size

    def _bounded_by_padding(self, lengths: list[int], i: int, size: int, total: int) -> int:
        """The slice from i shrunk (or, for short rows, grown) to the padding bounds (see run)."""
        full = self.batch_size * TOKENS_PER_BATCH_ROW

        def too_padded(n: int) -> bool:  # the slice of n rows from i; past `full` tokens, more rows add no speed
            limit = MAX_PAD_FRACTION if (n - 1) * lengths[i] < full else FULL_PAD_FRACTION
            return sum(lengths[i : i + n]) < (1 - limit) * n * lengths[i]

        while size > 1 and too_padded(size):
            size -= 1
        if size == self.batch_size and not self.ran_out_of_memory:  # short rows: more of them
            while i + size < total and (size + 1) * lengths[i] <= full and not too_padded(size + 1):
                size += 1
        return size

    def _recorded(self, batch: list, job: BatchJob, sink: ResultSink, split_on_oom: bool = False) -> None:
        """job.run(batch) between the sink's in-flight marker and the commit of its results."""
        requests = job.requests(batch)
        self.work.batch(requests)
        sink.started(requests)
        if split_on_oom:
            self._run_splitting(batch, job)
        else:
            job.run(batch)
        sink.commit()

    def _run_splitting(self, batch: list, job: BatchJob) -> None:
        """job.run(batch), in halves (recursively) where it runs out of accelerator memory."""
        try:
            job.run(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            log.warning("out of memory at batch size %d: running it in halves", len(batch))
            self._free_memory()
            self._run_splitting(batch[: len(batch) // 2], job)
            self._run_splitting(batch[len(batch) // 2 :], job)

    def _free_memory(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.empty_cache()

    def memory_budget(self) -> int:
        """Bytes a batch may use: 80 % of free accelerator memory, or half the available RAM (a
        process that exhausts RAM is killed, not warned). Under data parallel, the smallest over the
        processes, measured once, so that all of them plan the same batches."""
        if self._budget is not None:
            return self._budget()
        if self._agreed_budget is not None:
            return self._agreed_budget
        device = self.model.device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = int(free * 0.8)
        else:
            import psutil

            budget = int(psutil.virtual_memory().available * 0.5)
        if self.parallel.size > 1:
            self._agreed_budget = budget = self.parallel.smallest(budget)
        return budget

    def batch_bytes(self, rows: int, new_tokens: int, cached_tokens: int, scored: int) -> int:
        """Rough peak memory of one forward pass: KV cache, widest activation, attention, kept logits."""
        cfg = getattr(self.model.config, "text_config", None) or self.model.config
        width = self.model.dtype.itemsize
        heads = cfg.num_attention_heads
        kv_dim = getattr(cfg, "num_key_value_heads", heads) * (
            getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        )
        total = cached_tokens + new_tokens
        kv = 2 * cfg.num_hidden_layers * kv_dim * total * rows * width
        activations = rows * new_tokens * max(3 * cfg.intermediate_size, 4 * cfg.hidden_size) * width
        attention = rows * heads * new_tokens * total * 4
        logits = 2 * rows * scored * cfg.vocab_size * 4
        return kv + activations + attention + logits
