"""GSM8K: openai/grade-school-math's test.jsonl, read as openai/gsm8k's `main` test split.

The hub's `main` config is the release's grade_school_math/data/{train,test}.jsonl as is
(question, answer with its <<calculator>> annotations and "#### <number>"). The mirror has the test
file only: the train split, from which lm-eval's `gsm8k` draws its 5 shots, is absent. The
`socratic` config (different answers, from the *_socratic.jsonl files) is not in the mirror.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout, mirror_dataset_dict

GSM8K_TEST = "gsm8k/test.jsonl"


def gsm8k_features():
    """openai/gsm8k's features."""
    import datasets

    return datasets.Features({"question": datasets.Value("string"), "answer": datasets.Value("string")})


def load_gsm8k_main(root: Path, name: str | None):
    """GSM8K `main` from the release's test.jsonl: the hub's test split (train absent)."""
    import datasets

    if name != "main":
        raise DataUnavailableError(f"GSM8K config '{name}' is not in the mirror: it holds 'main' (test.jsonl) only")
    with open(root / GSM8K_TEST, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    test = datasets.Dataset.from_list(rows, features=gsm8k_features())
    return mirror_dataset_dict({"test": test}, absent=["train"], source=f"openai/gsm8k/main in the mirror {root}")


_DESCRIPTION = "openai/grade-school-math test JSONL: gsm8k/test.jsonl"
_CONFIGS = {"main": GSM8K_TEST}

LAYOUTS = {
    "openai/gsm8k": Layout(GSM8K_TEST, load_gsm8k_main, _DESCRIPTION, configs=_CONFIGS),
    # the hub's older id for the same dataset, named by older task YAMLs
    "gsm8k": Layout(GSM8K_TEST, load_gsm8k_main, _DESCRIPTION, configs=_CONFIGS),
}
