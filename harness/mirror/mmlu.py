"""MMLU: the original Hendrycks CSV release, converted on load to cais/mmlu's schema."""

from __future__ import annotations

import csv
from pathlib import Path

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout

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
                        {
                            "question": question,
                            "subject": subject,
                            "choices": [a, b, c, d],
                            "answer": "ABCD".index(answer),
                        }
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


LAYOUTS = {
    "cais/mmlu": Layout(
        "mmlu/data/test", load_mmlu_hendrycks, "Hendrycks MMLU CSVs: mmlu/data/{test,dev,val}/<subject>_<split>.csv"
    ),
    # lm-eval's older MMLU YAMLs name this copy of cais/mmlu
    "hails/mmlu_no_train": Layout("mmlu/data/test", load_mmlu_hendrycks, "as cais/mmlu"),
}
