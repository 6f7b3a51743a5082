"""The overlap of evaluation documents with training or retrieval text, by hashed word n-grams.

Every evaluation document's n-grams (input, then label) are hashed into one sorted array; the
training text streams past in blocks, each block's n-grams hashed and looked up in it
(searchsorted), marking the evaluation n-grams seen. Memory is the evaluation side (8 bytes and a
flag per n-gram) plus one block: the training text is never held, and nothing is compared pair by
pair. A document's class follows OpenCompass: its input seen (input-contaminated), an n-gram
holding a label word seen too (input-and-label-contaminated), or only label n-grams seen (label).
Its longest span is the longest run of consecutive seen n-grams, in words (ConTAM's signal).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from harness.contamination.docs import EvalDoc
from harness.contamination.ngrams import DEFAULT_N, Vocabulary, ngram_hashes, words

CLEAN, INPUT, INPUT_AND_LABEL, LABEL = "clean", "input", "input-and-label", "label"
BLOCK_WORDS = 1 << 21  # words hashed at once: about 50 MB of numpy work arrays


@dataclass(frozen=True)
class DocOverlap:
    task: str
    doc_id: int
    doc_hash: str
    ngrams: int  # distinct n-grams of input + label (0: shorter than n words, not checkable)
    matched: int  # of them, seen in the training text
    longest: int  # words in the longest run of consecutive seen n-grams (0: none)
    kind: str  # clean, input, input-and-label, label

    @property
    def share(self) -> float:
        return self.matched / self.ngrams if self.ngrams else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "share": round(self.share, 4)}


def doc_overlap(
    doc: EvalDoc, hashes: np.ndarray, input_words: int, seen: np.ndarray, n: int, positions: np.ndarray | None = None
) -> DocOverlap:
    """One document's overlap from its n-gram hashes, which of them were seen, and where each starts
    (in words; default: one after the other from 0)."""
    if not len(hashes):
        return DocOverlap(doc.task, doc.doc_id, doc.doc_hash, 0, 0, 0, CLEAN)
    positions = np.arange(len(hashes)) if positions is None else positions
    distinct, first = np.unique(hashes, return_index=True)
    matched = int(seen[first].sum())
    starts = positions[seen]
    longest = 0
    if matched:
        breaks = np.flatnonzero(np.diff(starts) != 1)
        edges = np.concatenate(([-1], breaks, [len(starts) - 1]))
        longest = int(np.diff(edges).max()) + n - 1
    touches_input = bool(len(starts) and starts[0] < input_words)
    touches_label = bool(len(starts) and starts[-1] + n - 1 >= input_words)
    kind = (
        CLEAN
        if not matched
        else INPUT_AND_LABEL
        if touches_input and touches_label
        else INPUT
        if touches_input
        else LABEL
    )
    return DocOverlap(doc.task, doc.doc_id, doc.doc_hash, len(distinct), matched, longest, kind)


class EvalNgrams:
    """The hashed n-grams of evaluation documents, and which of them the text fed so far holds."""

    def __init__(self, docs: Iterable[EvalDoc], n: int = DEFAULT_N, max_docs: int | None = None):
        """max_docs: n-grams in more evaluation documents than this are template text (a prompt's
        fixed choices and answer line), neither looked up nor counted; None keeps every n-gram."""
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n = n
        self.vocab = Vocabulary()
        self.docs: list[EvalDoc] = []
        parts, offsets, inputs = [], [0], []
        for doc in docs:
            input_ids = self.vocab.add(words(doc.input))
            ids = np.concatenate((input_ids, self.vocab.add(words(doc.label))))
            hashes, _ = ngram_hashes(ids, n)  # every evaluation word has an id: all valid
            self.docs.append(doc)
            parts.append(hashes)
            offsets.append(offsets[-1] + len(hashes))
            inputs.append(len(input_ids))
        self._hashes = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        self._offsets, self._inputs = offsets, inputs
        self.table = np.unique(self._hashes)
        self.common = np.zeros(0, np.uint64)
        if max_docs is not None and parts:
            per_doc = np.concatenate([np.unique(h) for h in parts])
            values, counts = np.unique(per_doc, return_counts=True)
            self.common = values[counts > max_docs]
            self.table = np.setdiff1d(self.table, self.common, assume_unique=True)
        self.seen = np.zeros(len(self.table), bool)
        self._carry = np.zeros(0, np.uint64)
        self._pending: list[np.ndarray] = []
        self._pending_words = 0

    @property
    def nbytes(self) -> int:
        """Memory of the evaluation side's arrays (the vocabulary dict not counted)."""
        return self._hashes.nbytes + self.table.nbytes + self.seen.nbytes

    def feed(self, text: str, new_segment: bool = True) -> None:
        """Training text; new_segment: it does not continue the text fed before (no n-gram spans the two)."""
        ids = self.vocab.lookup(words(text))
        if new_segment:
            self._pending.append(np.zeros(1, np.uint64))  # id 0: no n-gram crosses it
        self._pending.append(ids)
        self._pending_words += len(ids) + 1
        if self._pending_words >= BLOCK_WORDS:
            self.flush()

    def flush(self) -> None:
        """Look the pending text up (feed does this every block; call it once at the end)."""
        if not self._pending:
            return
        ids = np.concatenate([self._carry, *self._pending])
        self._pending, self._pending_words = [], 0
        self._carry = ids[-(self.n - 1) :] if self.n > 1 else np.zeros(0, np.uint64)
        self.mark(ids)

    def mark(self, ids: np.ndarray) -> None:
        hashes, valid = ngram_hashes(ids, self.n)
        hashes = hashes[valid]
        if not len(hashes) or not len(self.table):
            return
        where = np.minimum(np.searchsorted(self.table, hashes), len(self.table) - 1)
        self.seen[where[self.table[where] == hashes]] = True

    def reset(self) -> None:
        self.seen[:] = False
        self._carry, self._pending, self._pending_words = np.zeros(0, np.uint64), [], 0

    def results(self) -> list[DocOverlap]:
        """Per evaluation document, in the order given, its overlap with everything fed."""
        self.flush()
        out = []
        for i, doc in enumerate(self.docs):
            hashes = self._hashes[self._offsets[i] : self._offsets[i + 1]]
            positions = np.arange(len(hashes))
            if len(self.common):
                kept = ~np.isin(hashes, self.common)
                hashes, positions = hashes[kept], positions[kept]
            where = np.minimum(np.searchsorted(self.table, hashes), max(len(self.table) - 1, 0))
            seen = self.seen[where] & (self.table[where] == hashes) if len(self.table) else np.zeros(len(hashes), bool)
            out.append(doc_overlap(doc, hashes, self._inputs[i], seen, self.n, positions))
        return out
