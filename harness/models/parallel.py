"""Data parallel through accelerate: the processes share out a runner's batches.

Under `accelerate launch` every process receives every request (lm-eval is told rank 0 of 1, so it
neither shards docs nor gathers) and all plan the same batches; batch k runs on process
k % processes and the results are gathered. Every request is computed in the very batch (rows,
padding, packing) one process would give it, so the numbers are the same bit for bit.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def distributed_state() -> Any:
    """accelerate's process state when launched with several processes, else None. Without an
    accelerator the processes are CPU processes talking over gloo (accelerate wants cpu=True to say so)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import is_cuda_available

    return PartialState(cpu=not is_cuda_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true")


class DataParallel:
    """This process's part in a data-parallel run (one process: rank 0 of 1, and every call a no-op)."""

    def __init__(self, state: Any = None) -> None:
        self.state = state
        self.rank: int = state.process_index if state is not None else 0
        self.size: int = state.num_processes if state is not None else 1
        self._batches_planned = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self) -> bool:
        """Whether the next planned batch runs in this process (batch k on process k % processes)."""
        k, self._batches_planned = self._batches_planned, self._batches_planned + 1
        return k % self.size == self.rank

    def from_main(self, value: T) -> T:
        """The main process's value, in every process."""
        if self.size == 1:
            return value
        import torch

        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def smallest(self, value: int) -> int:
        """The smallest of every process's value."""
        if self.size == 1:
            return value
        import torch

        values: list = [None] * self.size
        torch.distributed.all_gather_object(values, value)
        return min(values)

    def gather(self, results: list) -> list:
        """Every process's results merged (each computed the entries of its batches; the others are None)."""
        if self.size == 1:
            return results
        import torch

        parts: list = [None] * self.size
        torch.distributed.all_gather_object(parts, {i: r for i, r in enumerate(results) if r is not None})
        for part in parts:
            for i, r in part.items():
                results[i] = r
        missing = sum(r is None for r in results)
        if missing:
            raise RuntimeError(f"data parallel: {missing} results computed by no process (batch plans differ)")
        return results

    def progress(self, total: int, disable: bool, desc: str) -> tqdm:
        """A progress bar over all requests; under data parallel the main process alone shows it, and
        counts each batch of the others' as done when it skips it (they run in step)."""
        if self.size > 1:
            disable = disable or not self.main
            desc = f"{desc} ({self.size} processes)"
        return tqdm(total=total, disable=disable, desc=desc, unit="req")

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()
