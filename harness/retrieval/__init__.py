"""Retrieval: passage collections, BM25 and dense indexes on disk, and their cache.

A collection is a list of passages {id, title, text}: a JSONL file, a folder of .txt files, or a
built-in name (`squad_dev_paragraphs`, read from the data mirror); see `collection`. An index is a
folder holding passages.jsonl, the retriever's own files and spec.json (what built it: collection
sha256, retriever options, model and weights sha256, library versions, counts, seconds); see `index`.
How each retriever tokenises, embeds and identifies itself is in `retrievers`.

Tasks use it through harness.adapters.rag (a task YAML's `metadata.harness_rag`); `harness index`
through build_collection_index and Index.
"""

from harness.retrieval.collection import (
    BUILTIN_COLLECTIONS,
    SQUAD_DEV_PARAGRAPHS,
    chunk_passages,
    collection_sha256,
    read_collection,
    squad_dev_paragraphs,
)
from harness.retrieval.index import PASSAGES_FILE, SPEC_FILE, Index, build_collection_index, build_index, cached_index
from harness.retrieval.retrievers import (
    BM25_OPTIONS,
    DENSE_MODEL,
    RETRIEVERS,
    bm25_tokens,
    dense_model_dir,
    embed,
    retriever_spec,
)

__all__ = [
    "BM25_OPTIONS",
    "BUILTIN_COLLECTIONS",
    "DENSE_MODEL",
    "PASSAGES_FILE",
    "RETRIEVERS",
    "SPEC_FILE",
    "SQUAD_DEV_PARAGRAPHS",
    "Index",
    "bm25_tokens",
    "build_collection_index",
    "build_index",
    "cached_index",
    "chunk_passages",
    "collection_sha256",
    "dense_model_dir",
    "embed",
    "read_collection",
    "retriever_spec",
    "squad_dev_paragraphs",
]
