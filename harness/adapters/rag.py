"""Retrieval-augmented tasks: the task-loading hook behind a task YAML's `metadata.harness_rag`.

A task opts in through its YAML's `metadata.harness_rag` (see `RagConfig`); the hook (`RAG_HOOK`,
wired into every task manager through harness.adapters.task_hooks) gives it `RetrievalDocs` as its
process_docs: every doc of a split is enriched at once with the retrieved passages (`passages`, for
the prompt) and a `retrieved` list (ids, scores, gold flags), which lm-eval logs with each sample;
with a gold, recall@k and MRR@k are added to the task's metrics. Collections and indexes are
harness.retrieval's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import BadOptionError, DataUnavailableError, TaskConfigError
from harness.hashing import json_sha256
from harness.lm_eval_compat import add_metrics, apply_template
from harness.retrieval import RETRIEVERS, Index, cached_index


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
    def parse(cls, task: str, raw: Any) -> RagConfig:
        if not isinstance(raw, dict) or "collection" not in raw:
            raise TaskConfigError(f"task '{task}': metadata.harness_rag must be a mapping with a 'collection'")
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise TaskConfigError(
                f"task '{task}': metadata.harness_rag: unknown key(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
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

    def __init__(self, task: str, config: RagConfig, data_dir: Path | None, metadata: dict, inner: Any = None):
        self.task, self.config, self.data_dir, self.metadata, self.inner = task, config, data_dir, metadata, inner
        self._index: Index | None = None
        self._done: dict[str, Any] = {}

    def __repr__(self) -> str:  # lm-eval records process_docs as str() when it has no source: keep it stable
        return f"harness_rag({json.dumps(asdict(self.config), sort_keys=True)})"

    def index(self) -> Index:
        if self._index is None:
            try:
                self._index = cached_index(
                    self.config.collection, self.config.retriever, self.data_dir, self.config.chunk
                )
            except (BadOptionError, DataUnavailableError) as exc:
                raise DataUnavailableError(f"task '{self.task}': retrieval: {exc}") from exc
            # the index's identity goes into the task's recorded config (and so its hash)
            spec = self._index.spec
            self.metadata["harness_rag_index"] = {
                k: spec.get(k)
                for k in ("collection_sha256", "retriever", "chunk_words", "options", "model", "passages")
            }
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
            retrieved.append(
                [
                    {
                        "id": pid,
                        "score": score,
                        **({"gold": _is_gold(pid, by_id[pid], gold)} if gold is not None else {}),
                    }
                    for pid, score, _ in doc_hits
                ]
            )
        fingerprint = json_sha256(
            [getattr(dataset, "_fingerprint", None), repr(self), index.spec.get("collection_sha256")]
        )[:32]
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
    add_metrics(
        task,
        dict.fromkeys(docs.config.metric_names(), True),
        mean,
        lambda doc: retrieval_scores(doc.get("retrieved") or [], k),
    )


class RagHook:
    """The task-loading hook (harness.tasks.TaskHook) of retrieval-augmented tasks."""

    def config_loaded(self, cfg: dict[str, Any], data_dir: Path | None) -> None:
        rag_process_docs(cfg, data_dir)  # metadata.harness_rag: docs enriched with retrieved passages

    def task_built(self, task: Any) -> None:
        add_retrieval_metrics(task)  # recall@k, MRR@k of a retrieval task that knows its gold


RAG_HOOK = RagHook()
