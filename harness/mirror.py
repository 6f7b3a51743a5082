"""Task data from a local mirror (`--data-dir` / $HARNESS_DATA_DIR) instead of the hub.

A task names its hub dataset (`dataset_path`, `dataset_name`), as in lm-eval. Offline, the mirror
answers for it in one of two ways, tried in order:

1. A known original release: a dataset whose hub copy was made from files the mirror holds in
   their original layout (MMLU's Hendrycks CSVs, ...) is converted on load to the hub schema.
   `LAYOUTS` lists them with the path each expects under the mirror root.
2. The generic layout: `<root>/<dataset_path>/<dataset_name>/` (or `<root>/<dataset_path>/`)
   holding data files that `datasets.load_dataset(folder)` reads (parquet/jsonl/csv named by
   split, e.g. a hub snapshot), or a folder written by `DatasetDict.save_to_disk`.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.errors import DataUnavailableError

DATA_DIR_ENV = "HARNESS_DATA_DIR"


def resolve_data_dir(value: str | os.PathLike | None) -> Path | None:
    """The mirror root from the option or $HARNESS_DATA_DIR; None means the hub."""
    value = value or os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise DataUnavailableError(f"data dir '{value}' is not a folder")
    return root


# ------------------------------------------------------------------------------ original releases
MMLU_SPLITS = {"test": "test", "validation": "val", "dev": "dev"}


def _mmlu_subjects(root: Path) -> list[str]:
    return sorted(p.name[: -len("_test.csv")] for p in (root / "mmlu/data/test").glob("*_test.csv"))


def load_mmlu_hendrycks(root: Path, name: str | None):
    """MMLU from the original Hendrycks CSVs, in cais/mmlu's schema (question, subject, choices, answer)."""
    import datasets

    subjects = _mmlu_subjects(root) if name in (None, "all") else [name]
    splits = {}
    for split, folder in MMLU_SPLITS.items():
        rows = []
        for subject in subjects:
            path = root / "mmlu/data" / folder / f"{subject}_{folder}.csv"
            if not path.exists():
                raise DataUnavailableError(f"MMLU subject '{subject}': {path} is missing from the mirror")
            # csv module, not pandas: answers like "None" or "0" must stay the strings they are
            with open(path, newline="", encoding="utf-8") as f:
                for question, a, b, c, d, answer in csv.reader(f):
                    rows.append(
                        {"question": question, "subject": subject, "choices": [a, b, c, d], "answer": "ABCD".index(answer)}
                    )
        splits[split] = datasets.Dataset.from_list(rows, features=_mmlu_features())
    return datasets.DatasetDict(splits)


def _mmlu_features():
    import datasets

    return datasets.Features(
        {
            "question": datasets.Value("string"),
            "subject": datasets.Value("string"),
            "choices": datasets.Sequence(datasets.Value("string")),
            "answer": datasets.ClassLabel(names=["A", "B", "C", "D"]),
        }
    )


def load_bbh_original(root: Path, name: str | None):
    """BIG-Bench Hard from the original suzgunmirac/BIG-Bench-Hard task JSONs (input, target; test split)."""
    import datasets

    if not name:
        raise DataUnavailableError("BBH needs a task name (dataset_name), e.g. boolean_expressions")
    path = root / "bbh/bbh" / f"{name}.json"
    if not path.exists():
        raise DataUnavailableError(f"BBH task '{name}': {path} is missing from the mirror")
    examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
    rows = [{"input": e["input"], "target": e["target"]} for e in examples]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


@dataclass(frozen=True)
class Layout:
    """An original release a mirror may hold for a hub dataset."""

    marker: str  # path under the mirror root that shows the release is there
    load: Callable[[Path, str | None], Any]
    description: str


LAYOUTS: dict[str, Layout] = {
    "cais/mmlu": Layout("mmlu/data/test", load_mmlu_hendrycks, "Hendrycks MMLU CSVs: mmlu/data/{test,dev,val}/<subject>_<split>.csv"),
    # lm-eval's older MMLU YAMLs name this copy of cais/mmlu
    "hails/mmlu_no_train": Layout("mmlu/data/test", load_mmlu_hendrycks, "as cais/mmlu"),
    "SaylorTwift/bbh": Layout("bbh/bbh", load_bbh_original, "BIG-Bench-Hard task JSONs: bbh/bbh/<task>.json"),
    "lukaemon/bbh": Layout("bbh/bbh", load_bbh_original, "as SaylorTwift/bbh"),
}


# ------------------------------------------------------------------------------ lookup
def _generic_folder(root: Path, path: str, name: str | None) -> Path | None:
    candidates = [root / path / name] if name else []
    candidates.append(root / path)
    return next((c for c in candidates if c.is_dir()), None)


def mirror_source(root: Path, path: str, name: str | None) -> str | None:
    """Where the mirror would load (path, name) from, or None if it cannot."""
    layout = LAYOUTS.get(path)
    if layout and (root / layout.marker).exists():
        return f"{root / layout.marker.split('/')[0]} ({layout.description.split(':')[0]})"
    folder = _generic_folder(root, path, name)
    return str(folder) if folder else None


def load_from_mirror(root: Path, path: str, name: str | None, **_task_metadata: Any):
    """Load (path, name) from the mirror as a DatasetDict; lm-eval calls this as `custom_dataset`."""
    import datasets

    layout = LAYOUTS.get(path)
    if layout and (root / layout.marker).exists():
        return layout.load(root, name)
    folder = _generic_folder(root, path, name)
    if folder is None:
        expected = [f"{root / path / name}" if name else None, str(root / path)]
        if layout:
            expected.insert(0, str(root / layout.marker))
        raise DataUnavailableError(
            f"dataset {path}{'/' + name if name else ''} is not in the mirror {root}: looked for "
            + ", ".join(e for e in expected if e)
        )
    if (folder / "dataset_dict.json").exists():
        return datasets.load_from_disk(str(folder))
    return datasets.load_dataset(str(folder))
