"""`harness finetune`: train a PEFT adapter (LoRA or prompt tuning) on prompt/completion pairs.

data: the pairs (a JSONL file or a task's split), tokenised and batched; train: settings and the
resumable loop; checkpoints: what a killed run resumes from; card: the README.md and loss.svg.
An application: it uses the model catalog, tasks and adapters; nothing below it imports it.
"""

from harness.finetune.data import (
    Example,
    TrainData,
    collate,
    encode_example,
    load_train_data,
    read_jsonl_pairs,
    task_pairs,
)
from harness.finetune.train import FinetuneResult, FinetuneSettings, completion_loss, run_finetune

__all__ = [
    "Example",
    "FinetuneResult",
    "FinetuneSettings",
    "TrainData",
    "collate",
    "completion_loss",
    "encode_example",
    "load_train_data",
    "read_jsonl_pairs",
    "run_finetune",
    "task_pairs",
]
