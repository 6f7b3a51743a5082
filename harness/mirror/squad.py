"""SQuAD v1.1: the official dev-v1.1.json, converted on load to rajpurkar/squad's schema.

The conversion is the hub's own: rajpurkar/squad was built by the `squad` datasets script, which
walks data -> paragraphs -> qas of the official JSON and yields one row per question (id, title,
context, question, answers {text, answer_start}), text unchanged (contexts are not stripped). The
mirror has the dev file only: the hub's validation split; its train split is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout, mirror_dataset_dict

SQUAD_DEV = "squad/dev-v1.1.json"
SQUAD_CONFIG = "plain_text"  # the hub's one config


def read_squad_json(path: Path) -> list[dict]:
    """One row per question of an official SQuAD JSON, as the hub's `squad` script yields them."""
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)["data"]
    return [
        {
            "id": qa["id"],
            "title": article.get("title", ""),
            "context": paragraph["context"],
            "question": qa["question"],
            "answers": {
                "text": [a["text"] for a in qa["answers"]],
                "answer_start": [a["answer_start"] for a in qa["answers"]],
            },
        }
        for article in articles
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]


def squad_features():
    """rajpurkar/squad's features."""
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "title": datasets.Value("string"),
            "context": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
        }
    )


def load_squad_v11(root: Path, name: str | None):
    """SQuAD v1.1 from the official dev-v1.1.json: the hub's validation split (train absent)."""
    import datasets

    if name not in (None, SQUAD_CONFIG):
        raise DataUnavailableError(f"SQuAD v1.1 has one config, '{SQUAD_CONFIG}', not '{name}'")
    rows = read_squad_json(root / SQUAD_DEV)
    validation = datasets.Dataset.from_list(rows, features=squad_features())
    return mirror_dataset_dict(
        {"validation": validation}, absent=["train"], source=f"rajpurkar/squad in the mirror {root}"
    )


_DESCRIPTION = "official SQuAD v1.1 dev JSON: squad/dev-v1.1.json"

LAYOUTS = {
    "rajpurkar/squad": Layout(SQUAD_DEV, load_squad_v11, _DESCRIPTION),
    # the hub's older id for the same dataset, named by older task YAMLs
    "squad": Layout(SQUAD_DEV, load_squad_v11, _DESCRIPTION),
}
