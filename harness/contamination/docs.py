"""Evaluation documents of tasks as the contamination check sees them: each document's input (the
task's doc_to_text), its label (target delimiter + target, as `harness finetune` trains it) and
lm-eval's doc_hash (the hash the run's samples.jsonl.gz stores, so flags pair with stored runs)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.lm_eval_compat import handle_non_serializable


@dataclass(frozen=True)
class EvalDoc:
    task: str
    doc_id: int
    doc_hash: str
    input: str
    label: str


def doc_hash(doc: Any) -> str:
    """lm-eval's doc_hash of a logged sample (evaluator.py: sha256 of the doc as indented JSON)."""
    text = json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def doc_target(task, doc) -> str:
    """The text a document is scored against: target delimiter + the target (a choice's text for
    multiple choice, the first of several gold answers)."""
    cfg = task.config
    target = task.doc_to_target(doc)
    if cfg.output_type == "multiple_choice":
        choices = task.doc_to_choice(doc)
        target = choices[target] if isinstance(target, int) else target
    elif isinstance(target, list):
        target = target[0] if target else ""
    return cfg.target_delimiter + str(target)


def doc_input(task, doc) -> str:
    """The document's own question: doc_to_text, without the task's description (a description
    shared by every document of a task would make them all look contaminated together)."""
    text = task.doc_to_text(doc)
    return text if isinstance(text, str) else str(task.fewshot_context(doc, 0))


def eval_split(task) -> str:
    """The split a task is scored on: its test_split, or its validation_split without one."""
    cfg = task.config
    return cfg.test_split if task.has_test_docs() else cfg.validation_split


def split_docs(task, split: str) -> list:
    """A split of a task's dataset through the task's process_docs."""
    available = sorted(getattr(task, "dataset", None) or {})
    if split not in available:
        raise UserError(f"--split {split}: task '{task.config.task}' has splits {', '.join(available) or 'none'}")
    docs = task.dataset[split]
    return list(task.config.process_docs(docs) if task.config.process_docs is not None else docs)


def load_leaf_tasks(
    patterns: list[str], data_dir: str | Path | None = None, include_paths: tuple[str, ...] = ()
) -> tuple[list, dict[str, str]]:
    """The tasks that names, groups, tags and globs select (as `harness run --tasks` does), built,
    and the members skipped because the mirror lacks their data. Kept for the process: a check
    that reads a task's split as training data (task:mmlu:dev) and scores its tests builds it once."""
    key = (tuple(patterns), str(data_dir) if data_dir else None, tuple(include_paths))
    if key not in _BUILT:
        _BUILT.clear()  # one selection at a time: built tasks hold their datasets
        _BUILT[key] = _load_leaf_tasks(patterns, data_dir, include_paths)
    tasks, skipped = _BUILT[key]
    return list(tasks), dict(skipped)


_BUILT: dict[tuple, tuple[list, dict[str, str]]] = {}


def _load_leaf_tasks(
    patterns: list[str], data_dir: str | Path | None, include_paths: tuple[str, ...]
) -> tuple[list, dict[str, str]]:
    from lm_eval.api.group import Group
    from lm_eval.api.task import Task

    from harness.adapters import task_hooks
    from harness.mirror import resolve_data_dir
    from harness.tasks import build_task_manager, load_tasks, resolve_tasks

    root = resolve_data_dir(data_dir)
    tm = build_task_manager(include_paths, root, hooks=task_hooks())
    selection = resolve_tasks(tm, patterns, root)
    leaves: list = []
    for obj in load_tasks(tm, selection.names):
        members = obj.get_all_tasks(recursive=True) if isinstance(obj, Group) else [obj]
        leaves += [t for t in members if isinstance(t, Task) and t not in leaves]
    return leaves, selection.skipped


def task_eval_docs(task) -> Iterator[EvalDoc]:
    """The documents a run of the task scores, in its order (doc_id = position, as lm-eval's)."""
    name = task.config.task
    for doc_id, doc in enumerate(task.eval_docs):
        yield EvalDoc(name, doc_id, doc_hash(doc), doc_input(task, doc), doc_target(task, doc))


def split_pairs(task, split: str) -> list[tuple[str, str]]:
    """(zero-shot prompt, target) per document of a split: what `harness finetune --task` trains on."""
    return [(task.fewshot_context(doc, 0), doc_target(task, doc)) for doc in split_docs(task, split)]
