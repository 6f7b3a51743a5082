"""What a family module declares: the original release a mirror may hold for a hub dataset."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataUnavailableError


@dataclass(frozen=True)
class Layout:
    """An original release a mirror may hold for a hub dataset."""

    marker: str  # path under the mirror root that shows the release is there
    load: Callable[[Path, str | None], Any]
    description: str
    # dataset_name -> path under the root holding that config, for releases that come per config
    # (GLUE: one folder a task, QQP and MNLI possibly absent). None: the marker answers for all.
    configs: Mapping[str, str] | None = None

    def holds(self, root: Path, name: str | None) -> bool:
        """Whether the mirror at root has this release's data for config `name`."""
        if not (root / self.marker).exists():
            return False
        if self.configs is None:
            return True
        return name is not None and name in self.configs and (root / self.configs[name]).exists()

    def where(self, root: Path, name: str | None) -> Path:
        """The path that holds config `name` (the marker when the release is not per config)."""
        if self.configs is not None and name is not None and name in self.configs:
            return root / self.configs[name]
        return root / self.marker


def mirror_dataset_dict(splits: Mapping[str, Any], absent: Iterable[str], source: str):
    """A DatasetDict of the splits a mirror holds; `absent` names hub splits it lacks.

    lm-eval reads a task's few-shot split when it builds the task, even for zero-shot runs, so an
    absent hub split (GLUE's train) reads as an empty split of the same features instead of a
    KeyError. It stays out of keys(), and drawing few-shot examples from it is refused with a
    one-line error (`guard_absent_fewshot_split`). A split the hub does not have stays a KeyError.
    """
    dd = _mirror_dataset_dict_class()(splits)
    dd.absent_splits = frozenset(absent)
    dd.source = source
    return dd


@functools.cache
def _mirror_dataset_dict_class():
    import datasets  # on first use: `harness --help` stays fast

    class MirrorDatasetDict(datasets.DatasetDict):
        absent_splits: frozenset[str] = frozenset()
        source = ""

        def __getitem__(self, key):
            if isinstance(key, str) and key not in self and key in self.absent_splits:
                features = next(iter(self.values())).features
                return datasets.Dataset.from_dict({k: [] for k in features}, features=features)
            return super().__getitem__(key)

    return MirrorDatasetDict


class _AbsentSplitSampler:
    """Stands in for lm-eval's few-shot sampler when its split is not in the mirror: zero shots only."""

    def __init__(self, task: str, split: str, dataset):
        self.task, self.split, self.dataset = task, split, dataset

    def sample(self, n: int, *args, **kwargs):
        if n > 0:
            raise DataUnavailableError(
                f"task '{self.task}': {n}-shot examples come from split '{self.split}', and {self.dataset.source} "
                f"has {', '.join(self.dataset)} only; run it zero-shot (--num-fewshot 0) or from the hub"
            )
        return []

    def set_rnd(self, rnd):
        return self


def guard_absent_fewshot_split(task) -> None:
    """If `task` would draw few-shot examples from a split the mirror lacks, make that a clear error."""
    from harness.lm_eval_compat import fewshot_split, has_fewshot_sampler, replace_fewshot_sampler

    dataset = getattr(task, "dataset", None)
    absent = getattr(dataset, "absent_splits", None)
    if not absent or not has_fewshot_sampler(task):
        return
    split = fewshot_split(task)  # None: the task's config writes its examples out
    if split is not None and split in absent:
        replace_fewshot_sampler(task, _AbsentSplitSampler(task.config.task, split, dataset))
