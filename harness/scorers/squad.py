"""SQuAD v1.1 exact match and token F1 under the official evaluation script's rules (evaluate-v1.1.py).

Normalisation: lowercase, drop ASCII punctuation (string.punctuation), drop the articles a/an/the as
whole words, collapse whitespace. F1 is over whitespace tokens of the normalised strings (multiset
overlap). A prediction is scored against every gold answer and the best score is kept. Scores are 0-1
(the official script reports 0-100 averages).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from harness.scorers.rouge import as_references

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_squad_answer(text: str) -> str:
    """Lowercase, strip punctuation, remove articles, collapse whitespace (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_squad_answer(prediction).split()
    gold_tokens = normalize_squad_answer(gold).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:  # also when either side normalises to nothing: the official script scores 0
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_exact_match(golds: str | Sequence[str], prediction: str) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    pred = normalize_squad_answer(prediction)
    return float(any(pred == normalize_squad_answer(g) for g in as_references(golds)))


def squad_f1(golds: str | Sequence[str], prediction: str) -> float:
    """Token F1 of the prediction against its best gold answer (0-1)."""
    return max(_token_f1(prediction, g) for g in as_references(golds))
