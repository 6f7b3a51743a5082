"""Loader for the demo family's bundled data (JSONL beside this file, one `split` field per row)."""

import json
from pathlib import Path


def load_demo(data_file: str, **_metadata):
    """lm-eval `custom_dataset`: the rows of data_file grouped into splits."""
    import datasets

    splits: dict[str, list[dict]] = {}
    with open(Path(__file__).parent / data_file, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            splits.setdefault(row.pop("split"), []).append(row)
    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})
