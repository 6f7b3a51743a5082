"""NQ-open: the original NQ-open.dev.jsonl, read as google-research-datasets/nq_open's validation split.

The hub's `nq_open` script reads google-research-datasets/natural-questions' nq_open/NQ-open.{train,dev}.jsonl
line by line into (question, answer list), so the dev file is its validation split as is (3,610
questions). The mirror has no train file: that split is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout, mirror_dataset_dict

NQ_OPEN_DEV = "nq_open/NQ-open.dev.jsonl"
NQ_OPEN_CONFIG = "nq_open"  # the hub's one config (lm-eval's YAML names none)


def nq_open_features():
    """google-research-datasets/nq_open's features."""
    import datasets

    return datasets.Features(
        {"question": datasets.Value("string"), "answer": datasets.Sequence(datasets.Value("string"))}
    )


def load_nq_open(root: Path, name: str | None):
    """NQ-open from the original dev JSONL: the hub's validation split (train absent)."""
    import datasets

    if name not in (None, NQ_OPEN_CONFIG):
        raise DataUnavailableError(f"NQ-open has one config, '{NQ_OPEN_CONFIG}', not '{name}'")
    with open(root / NQ_OPEN_DEV, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    validation = datasets.Dataset.from_list(rows, features=nq_open_features())
    return mirror_dataset_dict(
        {"validation": validation}, absent=["train"], source=f"google-research-datasets/nq_open in the mirror {root}"
    )


_DESCRIPTION = "original NQ-open dev JSONL: nq_open/NQ-open.dev.jsonl"

LAYOUTS = {
    "google-research-datasets/nq_open": Layout(NQ_OPEN_DEV, load_nq_open, _DESCRIPTION),
    # the hub's older id for the same dataset, named by older task YAMLs
    "nq_open": Layout(NQ_OPEN_DEV, load_nq_open, _DESCRIPTION),
}
