"""Training data for `harness finetune`: prompt/completion pairs (a JSONL file or a task's split),
tokenised with labels on the completion only, batched, held out and ordered."""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.hashing import file_sha256, json_sha256


@dataclass
class Example:
    prompt: str
    completion: str


@dataclass
class TrainData:
    examples: list[Example]
    source: dict[str, Any]  # where the examples came from, with a sha256 of their content
    task: Any = field(default=None, repr=False)  # the lm-eval task of `--task` (its evaluation split)
    contamination: dict[str, Any] | None = None  # the pairs' overlap with that split, for the card


def read_jsonl_pairs(path: str | os.PathLike) -> TrainData:
    """OpenAI fine-tuning pairs: one {"prompt": ..., "completion": ...} object a line."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--data {path}: no such file")
    examples = []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise UserError(f"--data {path}: line {number} is not JSON ({exc})") from None
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("prompt"), str)
                or not isinstance(row.get("completion"), str)
            ):
                raise UserError(f'--data {path}: line {number} needs string fields "prompt" and "completion"')
            if not row["completion"]:
                raise UserError(f"--data {path}: line {number} has an empty completion (nothing to learn)")
            examples.append(Example(row["prompt"], row["completion"]))
    if not examples:
        raise UserError(f"--data {path}: no examples (empty file)")
    return TrainData(examples, {"kind": "jsonl", "path": str(file.resolve()), "sha256": file_sha256(file)})


def task_pairs(
    task_name: str,
    split: str,
    data_dir: str | None = None,
    include_paths: tuple[str, ...] = (),
    allow_eval_split: bool = True,
) -> TrainData:
    """(zero-shot prompt, target_delimiter + target) per doc of a task's split: what evaluation scores.
    Without allow_eval_split, the split the task is scored on is refused."""
    from harness.adapters import task_hooks
    from harness.contamination.docs import eval_split, split_pairs
    from harness.mirror import resolve_data_dir
    from harness.tasks import build_task_manager, load_tasks, resolve_tasks

    root = resolve_data_dir(data_dir)
    tm = build_task_manager(include_paths, root, hooks=task_hooks())
    selection = resolve_tasks(tm, [task_name], root)
    if not selection.names:
        why = "; ".join(selection.skipped.values()) or "no such task"
        raise UserError(f"--task {task_name}: {why}")
    from lm_eval.api.task import Task

    tasks = [t for t in load_tasks(tm, selection.names) if isinstance(t, Task)]
    if len(tasks) != 1:
        raise UserError(f"--task {task_name}: name one task, not a group")
    task = tasks[0]
    scored_on = eval_split(task)
    if split == scored_on and not allow_eval_split:
        raise UserError(
            f"--split {split}: task '{task.config.task}' is evaluated on its {split} split; an adapter trained "
            f"on it is scored on what it learnt (--allow-eval-split to do it anyway)"
        )
    # any split of the task's dataset (a fewshot_split too), through the task's process_docs
    pairs = split_pairs(task, split)
    if not pairs:
        raise UserError(f"--task {task_name} --split {split}: no documents")
    examples = [Example(prompt, completion) for prompt, completion in pairs]
    content = json_sha256([[e.prompt, e.completion] for e in examples])
    return TrainData(
        examples,
        {
            "kind": "task",
            "task": task.config.task,
            "split": split,
            "data_dir": str(root) if root else None,
            "sha256": content,
        },
        task=task,
    )


def load_train_data(
    data: str | None,
    task: str | None,
    split: str = "validation",
    data_dir: str | None = None,
    include_paths: tuple[str, ...] = (),
    allow_eval_split: bool = False,
) -> TrainData:
    """`--data FILE.jsonl` or `--task NAME --split SPLIT`: exactly one of them; a task's pairs come
    with their overlap with the task's evaluation split (contamination)."""
    if bool(data) == bool(task):
        raise UserError("give training data: --data FILE.jsonl or --task NAME (one of them)")
    if data:
        return read_jsonl_pairs(data)
    assert task is not None  # one of the two, checked above
    pairs = task_pairs(task, split, data_dir, include_paths, allow_eval_split)
    pairs.contamination = eval_overlap(pairs)
    return pairs


def eval_overlap(data: TrainData) -> dict[str, Any] | None:
    """The overlap of a task's training pairs with the split the task is evaluated on (word 13-grams,
    harness.contamination), as the adapter card records it."""
    if data.task is None:
        return None
    from harness.contamination.check import check_texts, eval_documents

    docs, splits = eval_documents([data.task])
    report = check_texts((e.prompt + e.completion for e in data.examples), docs, splits)
    row = report.tasks[0] if report.tasks else None
    if row is None:
        return None
    return {
        "method": f"word {report.n}-grams (lm-eval janitor normalisation)",
        "n": report.n,
        "task": row.task,
        "split": row.split,
        "trained_on": data.source.get("split"),
        "documents": row.documents,
        "flagged": row.flagged,
        "counts": row.counts,
        "longest": row.longest,
        "mean_share": round(row.mean_share, 4),
        "flagged_doc_hashes": sorted(r.doc_hash for r in report.flagged),
    }


def encode_example(tokenizer, example: Example, max_length: int, add_eos: bool = True) -> tuple[list[int], list[int]]:
    """(input ids, labels) with labels -100 on the prompt. The prompt/completion split is lm-eval's
    (trailing spaces of the prompt move to the completion; whole string tokenised, then cut), so
    the completion tokens are the ones evaluation scores. Long prompts lose their oldest tokens."""
    prompt, completion = example.prompt, example.completion
    spaces = len(prompt) - len(prompt.rstrip())
    if spaces:
        prompt, completion = prompt[:-spaces], prompt[-spaces:] + completion
    whole = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    completion_ids = whole[len(prompt_ids) :]
    if add_eos and tokenizer.eos_token_id is not None:
        completion_ids = completion_ids + [tokenizer.eos_token_id]
    completion_ids = completion_ids[:max_length]
    prompt_ids = (
        prompt_ids[max(0, len(prompt_ids) - (max_length - len(completion_ids))) :]
        if max_length > len(completion_ids)
        else []
    )
    return prompt_ids + completion_ids, [-100] * len(prompt_ids) + completion_ids


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded input_ids, attention_mask and labels (-100 on padding) tensors."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    for row, (x, y) in enumerate(encoded):
        ids[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
        labels[row, : len(y)] = torch.tensor(y)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def split_holdout(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices): `holdout` is a fraction (< 1) or a count."""
    if holdout < 0:
        raise UserError("--holdout must be 0 or more (a fraction below 1, or a count)")
    k = int(holdout) if holdout >= 1 else (math.ceil(n * holdout) if holdout > 0 else 0)
    if k >= n:
        raise UserError(f"--holdout {holdout:g}: leaves no training examples out of {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[k:]), sorted(order[:k])


def length_grouped_order(lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """A seeded shuffle in which each batch holds examples of similar length (little padding):
    shuffle, sort within windows of 64 batches by length, cut into batches, shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 64
    batches = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return [i for b in batches for i in b]
