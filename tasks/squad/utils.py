"""SQuAD v1.1 task hooks (lm-eval `!function`): every gold answer as the target, scored against all at once."""

from lm_eval.api.registry import get_metric

import harness.scorers  # noqa: F401  registers squad_exact_match and squad_f1 with lm-eval

# must be the names in the YAML's metric_list: lm-eval aggregates exactly what process_results returns
SQUAD_METRICS = ("squad_exact_match", "squad_f1")


def gold_answers(doc):
    """All gold answer texts of a question (a few-shot example shows the first)."""
    return list(doc["answers"]["text"])


def score_squad(doc, results):
    """Official v1.1 EM and F1 of the generated answer, each the max over all gold answers."""
    # not lm-eval's list-target path: it scores each gold alone and keeps 1.0 if any is non-zero,
    # which turns F1 into a 0/1 score
    return {name: get_metric(name)(references=[gold_answers(doc)], predictions=[results[0]]) for name in SQUAD_METRICS}
