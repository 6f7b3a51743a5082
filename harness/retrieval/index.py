"""A retrieval index on disk: built from passages, loaded, searched (answers memoised), cached by content."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import BadOptionError, DataUnavailableError
from harness.hashing import json_sha256
from harness.paths import cache_dir
from harness.retrieval.collection import BUILTIN_COLLECTIONS, chunk_passages, collection_sha256, read_collection
from harness.retrieval.retrievers import BM25_OPTIONS, bm25_tokens, embed, retriever_spec

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
PASSAGES_FILE = "passages.jsonl"


@dataclass
class Hit:
    id: str
    score: float
    text: str


class Index:
    """A built retrieval index on disk: `Index.load(folder).search(queries, k)`."""

    def __init__(self, folder: Path, spec: dict[str, Any], passages: list[dict[str, str]], engine: Any):
        self.folder, self.spec, self.passages, self._engine = folder, spec, passages, engine

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Index:
        folder = Path(folder)
        try:
            spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
            with open(folder / PASSAGES_FILE, encoding="utf-8") as f:
                passages = [json.loads(line) for line in f]
        except (OSError, ValueError) as exc:
            raise DataUnavailableError(
                f"'{folder}' is not a harness index (build one with `harness index build`)"
            ) from exc
        if spec.get("retriever") == "bm25":
            import bm25s

            engine = bm25s.BM25.load(str(folder / "bm25"))
        elif spec.get("retriever") == "dense":
            import faiss

            engine = faiss.read_index(str(folder / "faiss.index"))
        else:
            raise DataUnavailableError(f"index '{folder}': unknown retriever '{spec.get('retriever')}'")
        return cls(folder, spec, passages, engine)

    def search(self, queries: list[str], k: int, show_progress: bool = False) -> list[list[tuple[str, float, str]]]:
        """The k best passages of each query, best first, as (passage id, score, text)."""
        if k < 1:
            raise BadOptionError("k must be at least 1")
        k = min(k, len(self.passages))
        if not queries:
            return []
        if self.spec["retriever"] == "bm25":
            tokens = bm25_tokens(list(queries), show_progress)
            idx, scores = self._engine.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        else:
            scores, idx = self._engine.search(embed(list(queries), show_progress), k)
        return [
            [(self.passages[i]["id"], float(s), self.passages[i]["text"]) for i, s in zip(row_i, row_s)]
            for row_i, row_s in zip(np.asarray(idx), np.asarray(scores))
        ]

    def search_memoised(
        self, queries: list[str], k: int, show_progress: bool = False
    ) -> list[list[tuple[str, float, str]]]:
        """search(), its answers kept in the index folder: a task's split is searched once, not every run."""
        memo = self.folder / "searches" / f"{json_sha256([list(queries), k])[:32]}.json"
        texts = {p["id"]: p["text"] for p in self.passages}
        try:
            rows = json.loads(memo.read_text(encoding="utf-8"))
            return [[(pid, score, texts[pid]) for pid, score in row] for row in rows]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        hits = self.search(queries, k, show_progress)
        try:
            memo.parent.mkdir(exist_ok=True)
            tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps([[[pid, score] for pid, score, _ in row] for row in hits]), encoding="utf-8")
            os.replace(tmp, memo)
        except OSError as exc:  # a read-only index still answers
            log.warning("could not keep the search results in %s: %s", memo, exc)
        return hits


def build_index(
    passages: list[dict[str, str]],
    out: str | os.PathLike,
    retriever: str,
    *,
    chunk: int | None = None,
    collection: str = "",
    show_progress: bool = True,
) -> Index:
    """Build an index of the passages into folder `out` (written whole, then moved into place)."""
    spec = retriever_spec(retriever, chunk)
    source_sha = collection_sha256(passages)
    passages = chunk_passages(passages, chunk)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BadOptionError(f"--out '{out}' exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        started = time.perf_counter()
        texts = [p["text"] for p in passages]
        if retriever == "bm25":
            import bm25s

            engine = bm25s.BM25(method=BM25_OPTIONS["method"], k1=BM25_OPTIONS["k1"], b=BM25_OPTIONS["b"])
            engine.index(bm25_tokens(texts, False), show_progress=False)
            engine.save(str(tmp / "bm25"))
        else:
            import faiss

            vectors = embed(texts, show_progress)
            engine = faiss.IndexFlatIP(vectors.shape[1])
            engine.add(vectors)
            faiss.write_index(engine, str(tmp / "faiss.index"))
        spec.update(
            {
                "collection": collection,
                "collection_sha256": source_sha,
                "source_documents": None,
                "passages": len(passages),
                "build_seconds": round(time.perf_counter() - started, 3),
            }
        )
        spec["source_documents"] = len({p.get("source", p["id"]) for p in passages})
        with open(tmp / PASSAGES_FILE, "w", encoding="utf-8") as f:
            for p in passages:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Index(out, spec, passages, engine)


def cached_index(source: str, retriever: str, data_dir: Path | None = None, chunk: int | None = None) -> Index:
    """The index of a collection from harness's cache, built there on first use.

    Keyed by the collection's sha256 and the retriever's spec, so a changed file or model rebuilds."""
    passages = read_collection(source, data_dir)
    key = json_sha256({"collection": collection_sha256(passages), "retriever": retriever_spec(retriever, chunk)})
    name = Path(str(source)).stem if str(source) not in BUILTIN_COLLECTIONS else str(source)
    folder = cache_dir() / "rag" / f"{name}-{retriever}-{key[:16]}"
    if (folder / SPEC_FILE).is_file():
        return Index.load(folder)
    log.info("building the %s index of %s into %s", retriever, source, folder)
    try:
        return build_index(passages, folder, retriever, chunk=chunk, collection=str(source))
    except BadOptionError:  # another process finished it first
        if (folder / SPEC_FILE).is_file():
            return Index.load(folder)
        raise


def build_collection_index(
    source: str,
    out: str | os.PathLike,
    retriever: str,
    *,
    chunk: int | None = None,
    data_dir: str | os.PathLike | None = None,
) -> Index:
    """`harness index build`: read the collection (built-in names from the mirror), build, write."""
    from harness.mirror import resolve_data_dir

    retriever_spec(retriever, chunk)  # an unknown retriever fails before the collection is read
    if chunk is not None and chunk < 1:
        raise BadOptionError("--chunk must be a positive number of words")
    passages = read_collection(source, resolve_data_dir(data_dir) if str(source) in BUILTIN_COLLECTIONS else None)
    return build_index(passages, out, retriever, chunk=chunk, collection=str(source))
