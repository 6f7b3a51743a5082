"""The contamination check, start to end: tasks' evaluation documents against training text
(`run_check`), a fine-tune's own pairs against one task (`check_texts`), and each few-shot prompt's
examples against the document it asks about (`check_prompts`)."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from harness.contamination.docs import EvalDoc, eval_split, load_leaf_tasks, task_eval_docs
from harness.contamination.ngrams import DEFAULT_N, ngram_hashes, words
from harness.contamination.overlap import DocOverlap, EvalNgrams, doc_overlap
from harness.contamination.report import Report, summarise
from harness.contamination.sources import read_source, source_size
from harness.errors import UserError


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def eval_documents(tasks: list, progress: bool = False) -> tuple[list[EvalDoc], dict[str, str | None]]:
    from tqdm.auto import tqdm

    docs: list[EvalDoc] = []
    splits: dict[str, str | None] = {}
    for task in tqdm(tasks, desc="evaluation documents", unit="task", disable=not progress or len(tasks) < 2):
        splits[task.config.task] = eval_split(task)
        docs += task_eval_docs(task)
    return docs, splits


def scan_sources(
    index: EvalNgrams,
    sources: list[str],
    data_dir: str | None = None,
    include_paths: tuple[str, ...] = (),
    progress: bool = True,
) -> int:
    """Stream every source's text past the index, with a progress bar over bytes; the bytes read."""
    from tqdm.auto import tqdm

    total = sum(source_size(s) for s in sources)
    read = 0
    with tqdm(total=total or None, desc="training text", unit="B", unit_scale=True, disable=not progress) as bar:
        for source in sources:
            for text, new, nbytes in read_source(source, data_dir, include_paths):
                index.feed(text, new)
                nbytes = nbytes or len(text.encode("utf-8"))
                read += nbytes
                bar.update(nbytes)
    index.flush()
    return read


def run_check(
    sources: list[str],
    patterns: list[str],
    n: int = DEFAULT_N,
    data_dir: str | None = None,
    include_paths: tuple[str, ...] = (),
    progress: bool = True,
    extra_docs: Iterable[EvalDoc] = (),
    max_docs: int | None = None,
) -> Report:
    """Every selected task's evaluation documents (and extra_docs) against the text of the sources."""
    if not sources:
        raise UserError("give the training or retrieval data to check: --data PATH (repeatable)")
    started = time.perf_counter()
    tasks, skipped = load_leaf_tasks(patterns, data_dir, include_paths) if patterns else ([], {})
    docs, splits = eval_documents(tasks, progress)
    docs += extra_docs
    index = EvalNgrams(docs, n, max_docs)
    loaded = time.perf_counter()
    read = scan_sources(index, sources, data_dir, include_paths, progress)
    results = index.results()
    task_rows, flagged = summarise(results, splits)
    stats = {
        "documents": len(docs),
        "evaluation n-grams": len(index.table),
        **({"template n-grams ignored": len(index.common)} if max_docs is not None else {}),
        "bytes read": read,
        "seconds (tasks)": round(loaded - started, 1),
        "seconds (scan)": round(time.perf_counter() - loaded, 1),
        "n-gram arrays MB": round(index.nbytes / 2**20, 1),
        "peak RSS MB": _peak_rss_mb(),
    }
    return Report(n, list(sources), task_rows, flagged, skipped=skipped, stats=stats)


def check_texts(texts: Iterable[str], docs: list[EvalDoc], splits: dict[str, str | None], n: int = DEFAULT_N) -> Report:
    """Documents against texts given in memory (each its own segment): a fine-tune's training pairs."""
    index = EvalNgrams(docs, n)
    for text in texts:
        index.feed(text)
    task_rows, flagged = summarise(index.results(), splits)
    return Report(n, ["training pairs"], task_rows, flagged)


def exemplar_text(prompt: str, own: str) -> str:
    """What a few-shot prompt holds besides its zero-shot self: the examples. The zero-shot prompt
    is description + the document's question, the few-shot one description + examples + question:
    the question is cut off the end first, then the description off the start."""
    tail = 0
    limit = min(len(prompt), len(own))
    while tail < limit and prompt[-1 - tail] == own[-1 - tail]:
        tail += 1
    head = 0
    while head < min(len(own), len(prompt)) - tail and prompt[head] == own[head]:
        head += 1
    return prompt[head : len(prompt) - tail]


def check_prompts(
    patterns: list[str],
    num_fewshot: int | None = None,
    n: int = DEFAULT_N,
    seed: int = 1234,
    limit: int | None = None,
    data_dir: str | None = None,
    include_paths: tuple[str, ...] = (),
    progress: bool = True,
) -> Report:
    """Per prompt: its few-shot examples (drawn as a run draws them: in document order, the few-shot
    seed) against the input and label of the document the prompt asks about."""
    from tqdm.auto import tqdm

    from harness.contamination.docs import doc_hash, doc_input, doc_target
    from harness.contamination.ngrams import Vocabulary

    tasks, skipped = load_leaf_tasks(patterns, data_dir, include_paths)
    results: list[DocOverlap] = []
    splits: dict[str, str | None] = {}
    for task in tasks:
        name = task.config.task
        shots = num_fewshot if num_fewshot is not None else task.config.num_fewshot
        if not shots:
            skipped[name] = "zero-shot (give --num-fewshot)"
            continue
        splits[name] = eval_split(task)
        task.set_fewshot_seed(seed)
        docs = list(task.eval_docs)[:limit] if limit else list(task.eval_docs)
        for doc_id, doc in enumerate(tqdm(docs, desc=name, unit="prompt", disable=not progress)):
            prompt = task.fewshot_context(doc, shots)
            examples = exemplar_text(prompt, task.fewshot_context(doc, 0))
            own = EvalDoc(name, doc_id, doc_hash(doc), doc_input(task, doc), doc_target(task, doc))
            vocab = Vocabulary()
            input_ids = vocab.add(words(own.input))
            hashes, _ = ngram_hashes(np.concatenate((input_ids, vocab.add(words(own.label)))), n)
            ex_hashes, valid = ngram_hashes(vocab.lookup(words(examples)), n)
            seen = np.isin(hashes, ex_hashes[valid])
            results.append(doc_overlap(own, hashes, len(input_ids), seen, n))
    if not results and skipped:
        raise UserError("no few-shot task to check: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    task_rows, flagged = summarise(results, splits)
    return Report(n, [f"few-shot examples, seed {seed}"], task_rows, flagged, mode="prompts", skipped=skipped)


def save_report(report: Report, json_out: str | Path | None, md_out: str | Path | None) -> None:
    from harness.contamination.report import report_markdown, write_flags

    if json_out:
        write_flags(report, json_out)
    if md_out:
        Path(md_out).write_text(report_markdown(report), encoding="utf-8")
