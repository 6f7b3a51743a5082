"""Passage collections: {id, title, text} from a JSONL file, a folder of .txt files or a built-in name."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.errors import BadOptionError, DataUnavailableError
from harness.hashing import json_sha256

SQUAD_DEV_PARAGRAPHS = "squad_dev_paragraphs"
BUILTIN_COLLECTIONS = (SQUAD_DEV_PARAGRAPHS,)


def read_collection(source: str | os.PathLike, data_dir: Path | None = None) -> list[dict[str, str]]:
    """Passages {id, title, text} of a built-in collection name, a JSONL file or a folder of .txt files."""
    if str(source) in BUILTIN_COLLECTIONS:
        return squad_dev_paragraphs(data_dir)
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataUnavailableError(f"collection folder '{source}' holds no .txt files")
        return [
            {
                "id": f.relative_to(path).with_suffix("").as_posix(),
                "title": f.stem,
                "text": f.read_text(encoding="utf-8", errors="replace"),
            }
            for f in files
        ]
    if not path.is_file():
        raise DataUnavailableError(
            f"collection '{source}' is neither a file, a folder nor one of: {', '.join(BUILTIN_COLLECTIONS)}"
        )
    passages = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataUnavailableError(f"collection {path}:{n}: not a JSON line ({exc})") from exc
            if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("text"), str):
                raise DataUnavailableError(f"collection {path}:{n}: each line needs 'id' and a string 'text'")
            passages.append({"id": str(row["id"]), "title": str(row.get("title") or ""), "text": row["text"]})
    if not passages:
        raise DataUnavailableError(f"collection {path} is empty")
    ids = [p["id"] for p in passages]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataUnavailableError(f"collection {path}: id '{dup}' occurs more than once")
    return passages


def squad_dev_paragraphs(data_dir: Path | None) -> list[dict[str, str]]:
    """The unique paragraphs of SQuAD v1.1 dev, from the mirror; id `<article index>-<paragraph index>`."""
    from harness.mirror.squad import SQUAD_DEV

    if data_dir is None:
        raise DataUnavailableError(
            f"collection '{SQUAD_DEV_PARAGRAPHS}' is read from the data mirror: "
            "pass --data-dir DIR (or set HARNESS_DATA_DIR)"
        )
    path = Path(data_dir) / SQUAD_DEV
    if not path.is_file():
        raise DataUnavailableError(f"collection '{SQUAD_DEV_PARAGRAPHS}': {path} not found in the mirror")
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)["data"]
    seen: set[str] = set()
    passages = []
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article["paragraphs"]):
            if paragraph["context"] not in seen:
                seen.add(paragraph["context"])
                passages.append({"id": f"{a}-{p}", "title": article.get("title", ""), "text": paragraph["context"]})
    return passages


def chunk_passages(passages: list[dict[str, str]], words: int | None) -> list[dict[str, str]]:
    """Each passage cut into windows of `words` whitespace words (ids `<id>#<n>`); None: unchanged."""
    if not words:
        return passages
    if words < 1:
        raise BadOptionError("--chunk must be a positive number of words")
    out = []
    for p in passages:
        tokens = p["text"].split()
        for n, start in enumerate(range(0, max(len(tokens), 1), words)):
            out.append(
                {
                    "id": f"{p['id']}#{n}",
                    "title": p["title"],
                    "text": " ".join(tokens[start : start + words]),
                    "source": p["id"],
                }
            )
    return out


def collection_sha256(passages: list[dict[str, str]]) -> str:
    return json_sha256([[p["id"], p.get("title", ""), p["text"]] for p in passages])
