"""SAMSum: JSONL re-exports of the hub dataset, converted back to the hub schema (id, dialogue, summary).

The mirror has no original Samsung corpus, only re-exports of the hub copy (see SOURCES.md):
`test.jsonl` / `validation.jsonl` (fields `context`, `response`; text byte for byte, `\\r\\n` kept)
and `test.with_ids.jsonl` (same test rows in the same order, with `id`, but `\\r\\n` normalised and one
summary shortened). Text comes from the byte-faithful pair; only the test ids come from the third
file, after checking row by row that it is the same dialogues in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout, mirror_dataset_dict

SAMSUM_FILES = {"test": "test.jsonl", "validation": "validation.jsonl"}
SAMSUM_TEST_IDS = "test.with_ids.jsonl"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise DataUnavailableError(f"SAMSum: {path} is missing from the mirror")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _same_dialogue(a: str, b: str) -> bool:
    # the id file normalised line breaks; compare as SOURCES.md's own cross-check does
    return a.replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


def load_samsum_reexport(root: Path, name: str | None):
    """SAMSum test/validation from the JSONL re-exports, in the hub schema (id, dialogue, summary)."""
    import datasets

    folder = root / "samsum"
    splits = {}
    for split, filename in SAMSUM_FILES.items():
        rows = _read_jsonl(folder / filename)
        ids: list[str | None] = [None] * len(rows)  # the validation re-export carries no ids
        if split == "test":
            with_ids = _read_jsonl(folder / SAMSUM_TEST_IDS)
            if len(with_ids) != len(rows) or not all(
                _same_dialogue(r["context"], w["dialogue"]) for r, w in zip(rows, with_ids)
            ):
                raise DataUnavailableError(
                    f"SAMSum: {folder / SAMSUM_TEST_IDS} does not list the dialogues of {folder / filename} in order"
                )
            ids = [w["id"] for w in with_ids]
        splits[split] = datasets.Dataset.from_list(
            [{"id": i, "dialogue": r["context"], "summary": r["response"]} for i, r in zip(ids, rows)],
            features=_samsum_features(),
        )
    # the hub's train split is not in the mirror: asking few-shot examples of it is a one-line error
    return mirror_dataset_dict(splits, ("train",), source=f"SAMSum in the mirror {root}")


def _samsum_features():
    import datasets

    return datasets.Features(
        {"id": datasets.Value("string"), "dialogue": datasets.Value("string"), "summary": datasets.Value("string")}
    )


LAYOUTS = {
    # the copy tasks/samsum names: Samsung/samsum, the original, left the hub in 2025 (and was a loading
    # script, which datasets>=4 no longer runs); this is a CSV copy with the same fields and splits
    "knkarthick/samsum": Layout(
        "samsum/test.jsonl",
        load_samsum_reexport,
        "SAMSum JSONL re-exports: samsum/{test,validation}.jsonl (+ test ids from test.with_ids.jsonl)",
    ),
    "Samsung/samsum": Layout("samsum/test.jsonl", load_samsum_reexport, "as knkarthick/samsum"),
    "samsum": Layout("samsum/test.jsonl", load_samsum_reexport, "as knkarthick/samsum"),
}
