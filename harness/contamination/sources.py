"""Training or retrieval text for the contamination check, streamed in blocks.

A source is a JSONL file (prompt/completion pairs, {"text": ...} rows, or any rows: their string
fields), a text file (.txt, .md, ... ; .gz too), a folder of them, a retrieval index from
`harness index build` (its passages), an adapter folder from `harness finetune` (the data its
card names), or `task:NAME:SPLIT` (a task's split as `harness finetune --task` trains on it).
Each yields (text, new_segment, bytes read): rows and files are segments of their own, the lines
of one text file continue each other.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from harness.errors import UserError

TEXT_SUFFIXES = {".txt", ".md", ".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".text", ".raw"}
BLOCK_CHARS = 1 << 20
Piece = tuple[str, bool, int]


class SourceError(UserError):
    pass


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _kind(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return "jsonl" if suffixes and suffixes[-1] in (".jsonl", ".ndjson") else "text"


def row_text(row: Any) -> str:
    """A JSONL row's text: prompt + completion, a "text" field, or its string fields joined."""
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        if isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
            return row["prompt"] + row["completion"]
        if isinstance(row.get("text"), str):
            return row["text"]
        return "\n".join(row_text(v) for v in row.values() if isinstance(v, (str, dict, list)))
    if isinstance(row, list):
        return "\n".join(row_text(v) for v in row)
    return ""


def read_jsonl(path: Path) -> Iterator[Piece]:
    with _open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise SourceError(f"{path}: line {number} is not JSON") from None
            yield row_text(row), True, len(line.encode("utf-8"))


def read_text(path: Path) -> Iterator[Piece]:
    first = True
    with _open(path) as f:
        while True:
            block = f.read(BLOCK_CHARS)
            if not block:
                return
            rest = f.readline()  # end on a line break, so no word is cut in two
            block += rest
            yield block, first, len(block.encode("utf-8", errors="replace"))
            first = False


def source_size(spec: str) -> int:
    """Bytes the source will read (for the progress bar; 0 where not known in advance)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path.stat().st_size
    if path.is_dir() and not _is_special(path):
        return sum(p.stat().st_size for p in _text_files(path))
    return 0


def _is_special(folder: Path) -> bool:
    return (
        (folder / "passages.jsonl").is_file() and (folder / "spec.json").is_file() or (folder / "card.json").is_file()
    )


def _text_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and ({s for s in p.suffixes} & TEXT_SUFFIXES or not p.suffix)
    )


def read_source(spec: str, data_dir: str | None = None, include_paths: tuple[str, ...] = ()) -> Iterator[Piece]:
    """The text of one source (see the module's docstring), in pieces."""
    if spec.startswith("task:"):
        yield from _task_source(spec, data_dir, include_paths)
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"--data {spec}: no such file or folder")
    if path.is_file():
        yield from read_jsonl(path) if _kind(path) == "jsonl" else read_text(path)
    elif (path / "passages.jsonl").is_file() and (path / "spec.json").is_file():  # a retrieval index
        yield from read_jsonl(path / "passages.jsonl")
    elif (path / "card.json").is_file():  # an adapter from `harness finetune`
        yield from _adapter_source(path, data_dir, include_paths)
    else:
        files = _text_files(path)
        if not files:
            raise SourceError(f"--data {spec}: a folder without text or JSONL files")
        for file in files:
            yield from read_jsonl(file) if _kind(file) == "jsonl" else read_text(file)


def card_source(folder: str | os.PathLike) -> str:
    """The training data an adapter's card names, as a source spec."""
    try:
        data = json.loads((Path(folder) / "card.json").read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SourceError(f"--data {folder}: an adapter folder whose card.json names no training data") from None
    if data.get("kind") == "task":
        return f"task:{data['task']}:{data['split']}"
    if not data.get("path"):
        raise SourceError(f"--data {folder}: its card names no training file")
    return str(data["path"])


def _adapter_source(folder: Path, data_dir, include_paths) -> Iterator[Piece]:
    spec = card_source(folder)
    if not spec.startswith("task:") and not Path(spec).exists():
        raise SourceError(f"--data {folder}: its card names {spec}, which is not here")
    yield from read_source(spec, data_dir, include_paths)


def _task_source(spec: str, data_dir, include_paths) -> Iterator[Piece]:
    from harness.contamination.docs import load_leaf_tasks, split_pairs

    parts = spec.split(":")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SourceError(f"--data {spec}: a task's split is task:NAME:SPLIT (e.g. task:samsum:validation)")
    tasks, _ = load_leaf_tasks([parts[1]], data_dir, include_paths)
    for task in tasks:
        for prompt, completion in split_pairs(task, parts[2]):
            yield prompt + completion, True, 0
