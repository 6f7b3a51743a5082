"""BIG-Bench Hard: the original suzgunmirac/BIG-Bench-Hard task JSONs."""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout


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


LAYOUTS = {
    "SaylorTwift/bbh": Layout("bbh/bbh", load_bbh_original, "BIG-Bench-Hard task JSONs: bbh/bbh/<task>.json"),
    "lukaemon/bbh": Layout("bbh/bbh", load_bbh_original, "as SaylorTwift/bbh"),
}
