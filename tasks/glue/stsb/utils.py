"""STS-B as regression by likelihood: the expected score under the model's choice of "0".."5"."""

import math


def doc_to_target(doc) -> int:
    """A few-shot example shows its gold score rounded half up to a whole number (3.5 -> "4")."""
    return int(math.floor(float(doc["label"]) + 0.5))


def expected_score(loglikelihoods) -> float:
    """Sum of s * p(s) over s = 0..5, p the softmax of the six choices' log-likelihoods."""
    top = max(loglikelihoods)
    weights = [math.exp(ll - top) for ll in loglikelihoods]
    return sum(score * w for score, w in enumerate(weights)) / sum(weights)


def process_results(doc, results):
    """One (prediction, gold) pair per doc; pearson and spearman are correlations over the corpus."""
    pair = (expected_score([ll for ll, _ in results]), float(doc["label"]))
    return {"pearson": pair, "spearman": pair}
