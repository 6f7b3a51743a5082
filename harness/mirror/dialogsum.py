"""DialogSum: the official cylnlp/dialogsum JSONL files, converted to knkarthick/dialogsum's schema.

The hub copy has one row per (dialogue, reference summary): `id`, `dialogue`, `summary`, `topic`.
Its test split is 1,500 rows, each of the 500 test dialogues three times with its three annotators'
summaries (ids `test_<n>_<k>`, k = 1..3); validation is the 500 dev dialogues (ids `dev_<n>`). The
loader writes the official files out in that shape, so the task sees the same rows offline as
online; tasks/dialogsum groups a dialogue's rows back into one doc with all its references.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout, mirror_dataset_dict

DIALOGSUM_FILES = {"test": "dialogsum.test.jsonl", "validation": "dialogsum.dev.jsonl"}
DIALOGSUM_TEST_REFERENCES = 3


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise DataUnavailableError(f"DialogSum: {path} is missing from the mirror")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_dialogsum_official(root: Path, name: str | None):
    """DialogSum test/validation from the official JSONL, in knkarthick/dialogsum's schema (one row a reference)."""
    import datasets

    folder = root / "dialogsum"
    test = [
        {"id": f"{r['fname']}_{k}", "dialogue": r["dialogue"], "summary": r[f"summary{k}"], "topic": r[f"topic{k}"]}
        for r in _read_jsonl(folder / DIALOGSUM_FILES["test"])
        for k in range(1, DIALOGSUM_TEST_REFERENCES + 1)
    ]
    validation = [
        {"id": r["fname"], "dialogue": r["dialogue"], "summary": r["summary"], "topic": r["topic"]}
        for r in _read_jsonl(folder / DIALOGSUM_FILES["validation"])
    ]
    features = datasets.Features({k: datasets.Value("string") for k in ("id", "dialogue", "summary", "topic")})
    splits = {
        "test": datasets.Dataset.from_list(test, features=features),
        "validation": datasets.Dataset.from_list(validation, features=features),
    }
    # the hub's train split is not in the mirror: asking few-shot examples of it is a one-line error
    return mirror_dataset_dict(splits, ("train",), source=f"knkarthick/dialogsum in the mirror {root}")


LAYOUTS = {
    "knkarthick/dialogsum": Layout(
        "dialogsum/dialogsum.test.jsonl",
        load_dialogsum_official,
        "DialogSum official JSONL: dialogsum/dialogsum.{test,dev}.jsonl (test: one row per reference, as on the hub)",
    ),
}
