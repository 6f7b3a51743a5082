"""Task data from a local mirror (`--data-dir` / $HARNESS_DATA_DIR) instead of the hub.

A task names its hub dataset (`dataset_path`, `dataset_name`), as in lm-eval. Offline, the mirror
answers for it in one of two ways, tried in order:

1. A known original release: a dataset whose hub copy was made from files the mirror holds in
   their original layout (MMLU's Hendrycks CSVs, ...) is converted on load to the hub schema.
   Each family has a module here (mmlu.py, bbh.py, glue.py, ...) declaring its `LAYOUTS`:
   hub id -> `Layout` (the path it expects under the mirror root and a loader; for releases that
   come per config, like GLUE's one folder a task, the path of each config, so a mirror holding
   some configs only says which). Hub splits the release lacks (GLUE's train) are named by the
   loader (`mirror_dataset_dict`): zero-shot tasks still build, few-shot draws from them are a
   one-line error (`guard_absent_fewshot_split`, applied by harness.tasks to every built task).
2. The generic layout: `<root>/<dataset_path>/<dataset_name>/` (or `<root>/<dataset_path>/`)
   holding data files that `datasets.load_dataset(folder)` reads (parquet/jsonl/csv named by
   split, e.g. a hub snapshot), or a folder written by `DatasetDict.save_to_disk`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.errors import DataUnavailableError
from harness.mirror import bbh, dialogsum, glue, gsm8k, mmlu, nq_open, samsum, squad, super_glue, wikitext
from harness.mirror.layout import Layout, guard_absent_fewshot_split, mirror_dataset_dict

__all__ = [
    "LAYOUTS",
    "Layout",
    "guard_absent_fewshot_split",
    "load_from_mirror",
    "mirror_dataset_dict",
    "mirror_source",
    "resolve_data_dir",
]

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
LAYOUTS: dict[str, Layout] = {}
for _family in (mmlu, bbh, glue, super_glue, squad, nq_open, gsm8k, wikitext, samsum, dialogsum):
    LAYOUTS.update(_family.LAYOUTS)


# ------------------------------------------------------------------------------ lookup
def _generic_folder(root: Path, path: str, name: str | None) -> Path | None:
    candidates = [root / path / name] if name else []
    candidates.append(root / path)
    layout = LAYOUTS.get(path)
    if layout:  # a release's own folder (hub id "glue", folder glue/) is not a hub snapshot
        candidates = [c for c in candidates if c != root / layout.marker.split("/")[0]]
    return next((c for c in candidates if c.is_dir()), None)


def mirror_source(root: Path, path: str, name: str | None) -> str | None:
    """Where the mirror would load (path, name) from, or None if it cannot."""
    layout = LAYOUTS.get(path)
    if layout and layout.holds(root, name):
        where = layout.where(root, name) if layout.configs is not None else root / layout.marker.split("/")[0]
        return f"{where} ({layout.description.split(':')[0]})"
    folder = _generic_folder(root, path, name)
    return str(folder) if folder else None


def load_from_mirror(root: Path, path: str, name: str | None, **_task_metadata: Any):
    """Load (path, name) from the mirror as a DatasetDict; lm-eval calls this as `custom_dataset`."""
    import datasets

    layout = LAYOUTS.get(path)
    if layout and layout.holds(root, name):
        return layout.load(root, name)
    folder = _generic_folder(root, path, name)
    if folder is None:
        expected = [f"{root / path / name}" if name else None, str(root / path)]
        held = ""
        if layout:
            expected.insert(0, str(layout.where(root, name)))
            if layout.configs is not None and (root / layout.marker).exists():
                present = [c for c in layout.configs if layout.holds(root, c)]
                held = f"; the mirror's {layout.description.split(':')[0]} hold {', '.join(present) or 'nothing'}"
        raise DataUnavailableError(
            f"dataset {path}{'/' + name if name else ''} is not in the mirror {root}: looked for "
            + ", ".join(e for e in expected if e)
            + held
        )
    if (folder / "dataset_dict.json").exists():
        return datasets.load_from_disk(str(folder))
    return datasets.load_dataset(str(folder))
