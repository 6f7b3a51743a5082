"""Word n-grams as lm-eval's decontamination janitor makes them, and their 64-bit hashes.

Normalisation is the janitor's (`lm_eval/decontamination/janitor.py`, `Janitor.normalize_string`):
ASCII letters lower-cased, `string.punctuation` deleted, nothing else touched; then the text is
split on whitespace and every run of n consecutive words is an n-gram (`word_ngrams`). The
janitor keeps n-grams as strings in a Python set; here the words get integer ids from the
evaluation side's vocabulary and an n-gram is a 64-bit rolling hash of its ids, computed for a
whole block of text at once with numpy. A word the evaluation documents never use gets id 0,
and an n-gram holding a 0 is dropped: it cannot match.
"""

from __future__ import annotations

import string

import numpy as np

DEFAULT_N = 13  # GPT-3's and lm-eval's
_TABLE = str.maketrans(string.ascii_lowercase + string.ascii_uppercase, string.ascii_lowercase * 2, string.punctuation)
# odd multipliers mod 2**64: the hash of ids w1..wn is sum(mix(w_i) * BASE**(n-i))
_BASE = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_OFFSET = np.uint64(0x94D049BB133111EB)


def normalise(text: str) -> str:
    """The janitor's normalize_string: ASCII lower case, punctuation deleted."""
    return text.translate(_TABLE)


def words(text: str) -> list[str]:
    """The words of a text after normalisation."""
    return normalise(text).split()


def word_ngrams(text: str, n: int = DEFAULT_N) -> list[str]:
    """The janitor's n-grams of a text (normalised, then n consecutive words joined by one space)."""
    tokens = words(text)
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


class Vocabulary:
    """Word -> id (1, 2, ...); the evaluation documents add words, training text only looks them up."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def add(self, tokens: list[str]) -> np.ndarray:
        ids = self.ids
        return np.fromiter((ids.setdefault(t, len(ids) + 1) for t in tokens), dtype=np.uint64, count=len(tokens))

    def lookup(self, tokens: list[str]) -> np.ndarray:
        get = self.ids.get
        return np.fromiter((get(t, 0) for t in tokens), dtype=np.uint64, count=len(tokens))


def ngram_hashes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every n-gram start, whether the n-gram is valid: no id 0 in it), len(ids) - n + 1 each."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    mixed = ids * _MIX + _OFFSET
    h = np.zeros(count, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _BASE + mixed[j : j + count]
    zeros = np.concatenate(([0], np.cumsum(ids == 0)))
    valid = (zeros[n:] - zeros[:count]) == 0
    return h, valid
