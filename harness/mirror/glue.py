"""GLUE: the GLUE-distribution dev TSVs, converted on load to nyu-mll/glue's schema.

The conversion is the hub's own: nyu-mll/glue was built by the `glue` datasets script, which
reads these very TSVs with csv.DictReader(delimiter="\\t", quoting=csv.QUOTE_NONE), maps the
label column through each task's class names, numbers rows from 0 as `idx` and drops rows with a
missing field. The mirror holds dev files only, so each config has its validation split(s); the
hub's train and test splits are absent (see harness.mirror.layout.mirror_dataset_dict).

One difference remains: the hub built MRPC from SentEval's msr_paraphrase_train.txt, so its
validation `idx` is the row's position in that file; the mirror has GLUE's dev.tsv (the same
rows, same text, same order) and numbers them 0..407.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout, mirror_dataset_dict


@dataclass(frozen=True)
class GlueConfig:
    """One GLUE task as the hub's script defines it, and where its dev file sits in the release."""

    folder: str
    text: dict[str, str]  # hub feature -> TSV column
    label_column: str
    label_classes: tuple[str, ...] | None  # None: a float score (STS-B)
    files: dict[str, str]  # hub split -> file in folder
    hub_splits: tuple[str, ...] = ("train", "validation", "test")


GLUE_CONFIGS = {
    # CoLA's dev.tsv has no header: source code, label, original label, sentence
    "cola": GlueConfig(
        "CoLA", {"sentence": "sentence"}, "is_acceptable", ("unacceptable", "acceptable"), {"validation": "dev.tsv"}
    ),
    "sst2": GlueConfig("SST-2", {"sentence": "sentence"}, "label", ("negative", "positive"), {"validation": "dev.tsv"}),
    "mrpc": GlueConfig(
        "MRPC",
        {"sentence1": "#1 String", "sentence2": "#2 String"},
        "Quality",
        ("not_equivalent", "equivalent"),
        {"validation": "dev.tsv"},
    ),
    "qqp": GlueConfig(
        "QQP",
        {"question1": "question1", "question2": "question2"},
        "is_duplicate",
        ("not_duplicate", "duplicate"),
        {"validation": "dev.tsv"},
    ),
    "stsb": GlueConfig(
        "STS-B", {"sentence1": "sentence1", "sentence2": "sentence2"}, "score", None, {"validation": "dev.tsv"}
    ),
    "mnli": GlueConfig(
        "MNLI",
        {"premise": "sentence1", "hypothesis": "sentence2"},
        "gold_label",
        ("entailment", "neutral", "contradiction"),
        {"validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv"},
        ("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"),
    ),
    "qnli": GlueConfig(
        "QNLI",
        {"question": "question", "sentence": "sentence"},
        "label",
        ("entailment", "not_entailment"),
        {"validation": "dev.tsv"},
    ),
    "rte": GlueConfig(
        "RTE",
        {"sentence1": "sentence1", "sentence2": "sentence2"},
        "label",
        ("entailment", "not_entailment"),
        {"validation": "dev.tsv"},
    ),
    "wnli": GlueConfig(
        "WNLI",
        {"sentence1": "sentence1", "sentence2": "sentence2"},
        "label",
        ("not_entailment", "entailment"),
        {"validation": "dev.tsv"},
    ),
}


def read_glue_tsv(path: Path, config: GlueConfig) -> list[dict]:
    """Rows of one GLUE TSV in the hub's schema, read as the hub's `glue` script reads them."""
    rows = []
    # utf-8-sig: GLUE's MRPC dev.tsv starts with a BOM (the hub script skips it too)
    with open(path, encoding="utf-8-sig") as f:
        headerless = config.folder == "CoLA"
        reader: Any = (csv.reader if headerless else csv.DictReader)(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, row in enumerate(reader):
            if headerless:
                row = {"sentence": row[3], "is_acceptable": row[1]}
            example = {feature: row.get(column) for feature, column in config.text.items()}
            example["label"] = _label(row.get(config.label_column), config)
            example["idx"] = n
            if all(v is not None for v in example.values()):  # the hub drops rows with a missing field
                rows.append(example)
    return rows


def _label(value: str | None, config: GlueConfig) -> int | float | None:
    if value is None or value == "":
        return None
    if config.label_classes is None:
        return float(value)  # stored as float32 by the features, as on the hub
    if value in config.label_classes:
        return config.label_classes.index(value)
    return int(value)


def glue_features(config: GlueConfig):
    """nyu-mll/glue's features for one config."""
    import datasets

    features = {name: datasets.Value("string") for name in config.text}
    features["label"] = (
        datasets.ClassLabel(names=list(config.label_classes)) if config.label_classes else datasets.Value("float32")
    )
    features["idx"] = datasets.Value("int32")
    return datasets.Features(features)


def load_glue_tsvs(root: Path, name: str | None):
    """GLUE task `name` from the GLUE-distribution dev TSVs, in nyu-mll/glue's schema."""
    import datasets

    if name not in GLUE_CONFIGS:
        raise DataUnavailableError(f"GLUE config '{name}' is not one the mirror knows ({', '.join(GLUE_CONFIGS)})")
    config = GLUE_CONFIGS[name]
    features = glue_features(config)
    splits = {}
    for split, file in config.files.items():
        path = root / "glue" / config.folder / file
        if not path.exists():
            raise DataUnavailableError(f"GLUE {name}: {path} is missing from the mirror")
        splits[split] = datasets.Dataset.from_list(read_glue_tsv(path, config), features=features)
    absent = [s for s in config.hub_splits if s not in splits]
    return mirror_dataset_dict(splits, absent, source=f"nyu-mll/glue/{name} in the mirror {root}")


_DESCRIPTION = "GLUE-distribution dev TSVs: glue/<TASK>/dev.tsv (MNLI: dev_matched.tsv, dev_mismatched.tsv)"
_CONFIG_PATHS = {name: f"glue/{c.folder}/{next(iter(c.files.values()))}" for name, c in GLUE_CONFIGS.items()}

LAYOUTS = {
    "nyu-mll/glue": Layout("glue", load_glue_tsvs, _DESCRIPTION, configs=_CONFIG_PATHS),
    # the hub's older id for the same dataset, named by older task YAMLs
    "glue": Layout("glue", load_glue_tsvs, _DESCRIPTION, configs=_CONFIG_PATHS),
}
