"""SuperGLUE: the official task jsonl files, converted on load to aps/super_glue's schema.

aps/super_glue (formerly `super_glue`) was built by the hub's `super_glue` dataset script from
these very files (`<Task>/{train,val,test}.jsonl` of the SuperGLUE v2 zips); its parquet export
keeps that script's features. The conversion here follows the script's rules, written anew:

- labels become the integers of the script's class names: booleans (BoolQ, MultiRC, WiC, WSC)
  index ("False", "True"), COPA's 0/1 index ("choice1", "choice2"), CB and RTE name their class;
  a test row without a label is -1. OpenCompass's copy writes booleans as "true"/"false" strings:
  read the same;
- MultiRC is flattened to one row per answer option, with idx {paragraph, question, answer};
- ReCoRD is one row per query, its entities the distinct passage spans (sorted: the hub stored a
  set, in no fixed order, and lm-eval's record task sorts them again), idx {passage, query};
- WSC is the one task read by lm-eval through the `wsc.fixed` config, whose builder repairs span
  *texts* that are not substrings of the passage (`fix_wsc_spans`). Span *indices* are not
  repaired: the 7 rows of the release whose index misses its word (see ../shared/data/SOURCES.md;
  validation idx 42 among them) keep it on the hub too, so the prompts lm-eval builds from them
  are the hub's, and so are ours.

The mirror holds no ReCoRD file and no BoolQ train file (too large to obtain): tasks over them are
missing from the mirror, and BoolQ's train split is absent (zero-shot only; see mirror_dataset_dict).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import DataUnavailableError
from harness.mirror.layout import Layout, mirror_dataset_dict

BOOL_CLASSES = ("False", "True")

# hub config -> (release folder, text features in the hub's order, label classes; None: ReCoRD)
SUPER_GLUE_CONFIGS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...] | None]] = {
    "boolq": ("BoolQ", ("question", "passage"), BOOL_CLASSES),
    "cb": ("CB", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral")),
    "copa": ("COPA", ("premise", "choice1", "choice2", "question"), ("choice1", "choice2")),
    "multirc": ("MultiRC", ("paragraph", "question", "answer"), BOOL_CLASSES),
    "record": ("ReCoRD", ("passage", "query"), None),
    "rte": ("RTE", ("premise", "hypothesis"), ("entailment", "not_entailment")),
    "wic": ("WiC", ("word", "sentence1", "sentence2"), BOOL_CLASSES),
    "wsc": ("WSC", ("text", "span1_text", "span2_text"), BOOL_CLASSES),
    "wsc.fixed": ("WSC", ("text", "span1_text", "span2_text"), BOOL_CLASSES),
}
_INT_FEATURES = {"wic": ("start1", "start2", "end1", "end2"), "wsc": ("span1_index", "span2_index")}
_FEATURE_ORDER = {  # the script's column order where integer features sit among the text ones
    "wic": ("word", "sentence1", "sentence2", "start1", "start2", "end1", "end2"),
    "wsc": ("text", "span1_index", "span2_index", "span1_text", "span2_text"),
}
SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}


def _base(name: str) -> str:
    return "wsc" if name.startswith("wsc") else name


def super_glue_features(name: str):
    """aps/super_glue's features for one config."""
    import datasets

    folder, text, classes = SUPER_GLUE_CONFIGS[name]
    base = _base(name)
    ints = _INT_FEATURES.get(base, ())
    columns: dict[str, Any] = {
        f: datasets.Value("int32" if f in ints else "string") for f in _FEATURE_ORDER.get(base, text)
    }
    int32 = datasets.Value("int32")
    if name == "multirc":
        columns["idx"] = {"paragraph": int32, "question": int32, "answer": int32}
    elif name == "record":
        columns["entities"] = datasets.Sequence(datasets.Value("string"))
        columns["entity_spans"] = datasets.Sequence({"text": datasets.Value("string"), "start": int32, "end": int32})
        columns["answers"] = datasets.Sequence(datasets.Value("string"))
        columns["idx"] = {"passage": int32, "query": int32}
    else:
        columns["idx"] = int32
    if classes is not None:
        columns["label"] = datasets.ClassLabel(names=list(classes))
    return datasets.Features(columns)


def label_index(value: Any, classes: tuple[str, ...], where: str) -> int:
    """A release label as the index of the hub's class name."""
    if isinstance(value, str) and classes == BOOL_CLASSES and value.lower() in ("true", "false"):
        value = value.lower() == "true"  # OpenCompass's copy writes booleans as strings
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1) and classes == BOOL_CLASSES):
        value = BOOL_CLASSES[int(value)]
    elif isinstance(value, int) and classes == ("choice1", "choice2"):
        value = classes[1] if value else classes[0]
    if value not in classes:
        raise DataUnavailableError(f"{where}: label {value!r} is none of {', '.join(classes)}")
    return classes.index(value)


_WSC_UNFIXABLE = ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin")  # the hub leaves these as they are


def fix_wsc_spans(example: dict[str, Any], where: str) -> dict[str, Any]:
    """The hub's `wsc.fixed` repair of one row: a span text that is not a substring of the passage
    takes the case of the passage word at its index, loses a trailing full stop and has its newlines
    made spaces (the builder's one hand-fixed row, "theyscold", also moves span2_index to 10)."""
    passage = example["text"]
    for span in ("span1", "span2"):
        text, index = example[f"{span}_text"], example[f"{span}_index"]
        if text in passage or text in _WSC_UNFIXABLE:
            continue
        if "theyscold" in text:
            example["span2_index"] = 10
        word = passage.split()[index]
        text = (text[0].lower() if word[0].islower() else text[0].upper()) + text[1:]
        text = text.rstrip(".").replace("\n", " ")
        if text not in passage:  # the hub's builder stops here too
            raise DataUnavailableError(f"{where}: {span} text {text!r} is not in the passage, even repaired")
        example[f"{span}_text"] = text
    return example


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise DataUnavailableError(f"{path}:{n}: not a JSON line ({exc})") from exc


def _examples(name: str, path: Path) -> Iterator[dict[str, Any]]:
    """One release file as the hub's rows."""
    _, text, classes = SUPER_GLUE_CONFIGS[name]
    for row in _rows(path):
        where = f"{path} idx {row.get('idx')}"
        try:
            yield from _CONVERT.get(name, _plain)(name, row, text, classes or (), where)
        except (KeyError, TypeError, IndexError) as exc:
            raise DataUnavailableError(f"{where}: not a SuperGLUE {name} row ({type(exc).__name__}: {exc})") from exc


def _label(row: dict[str, Any], classes: tuple[str, ...], where: str) -> int:
    return label_index(row["label"], classes, where) if row.get("label") is not None else -1


def _plain(name, row, text, classes, where):
    if name.startswith("wsc"):
        row = {**row, **row["target"]}
    example = {f: row[f] for f in _FEATURE_ORDER.get(_base(name), text)}
    if name == "wsc.fixed":
        example = fix_wsc_spans(example, where)
    example["idx"] = row["idx"]
    example["label"] = _label(row, classes, where)
    yield example


def _multirc(name, row, text, classes, where):
    passage = row["passage"]
    for question in passage["questions"]:
        for answer in question["answers"]:
            yield {
                "paragraph": passage["text"],
                "question": question["question"],
                "answer": answer["text"],
                "idx": {"paragraph": row["idx"], "question": question["idx"], "answer": answer["idx"]},
                "label": _label(answer, classes, where),
            }


def _record(name, row, text, classes, where):
    passage = row["passage"]["text"]
    # the release's entity ends are inclusive; the hub's spans end one past
    spans = sorted(
        (
            {"text": passage[e["start"] : e["end"] + 1], "start": e["start"], "end": e["end"] + 1}
            for e in row["passage"]["entities"]
        ),
        key=lambda s: s["start"],
    )
    entities = sorted({s["text"] for s in spans})
    columns = {key: [s[key] for s in spans] for key in ("text", "start", "end")}  # a Sequence of dicts is stored so
    for qa in row["qas"]:
        yield {
            "passage": passage,
            "query": qa["query"],
            "entities": entities,
            "entity_spans": columns,
            "answers": sorted({a["text"] for a in qa.get("answers", [])}),
            "idx": {"passage": row["idx"], "query": qa["idx"]},
        }


_CONVERT: dict[str, Callable] = {"multirc": _multirc, "record": _record}


def load_super_glue(root: Path, name: str | None):
    """SuperGLUE config `name` from the release's jsonl files, in aps/super_glue's schema."""
    import datasets

    if name not in SUPER_GLUE_CONFIGS:
        known = ", ".join(SUPER_GLUE_CONFIGS)
        raise DataUnavailableError(f"SuperGLUE config '{name}' is not one the mirror knows ({known})")
    folder = root / "super_glue" / SUPER_GLUE_CONFIGS[name][0]
    features = super_glue_features(name)
    splits = {
        split: datasets.Dataset.from_list(list(_examples(name, folder / file)), features=features)
        for split, file in SPLIT_FILES.items()
        if (folder / file).exists()
    }
    if "validation" not in splits:
        raise DataUnavailableError(f"SuperGLUE {name}: {folder / 'val.jsonl'} is missing from the mirror")
    absent = [s for s in SPLIT_FILES if s not in splits]
    return mirror_dataset_dict(splits, absent, source=f"aps/super_glue/{name} in the mirror {root}")


_DESCRIPTION = "SuperGLUE task jsonl files: super_glue/<Task>/{train,val}.jsonl"
_CONFIG_PATHS = {name: f"super_glue/{folder}/val.jsonl" for name, (folder, _, _) in SUPER_GLUE_CONFIGS.items()}

LAYOUTS = {
    "aps/super_glue": Layout("super_glue", load_super_glue, _DESCRIPTION, configs=_CONFIG_PATHS),
    # the hub's older id for the same dataset
    "super_glue": Layout("super_glue", load_super_glue, _DESCRIPTION, configs=_CONFIG_PATHS),
}
