"""Metrics and statistics: ROUGE, BLEU/chrF, SQuAD EM/F1, correlations, ECE, stderr and intervals, signatures.

Importing this package registers our metric names with lm-eval's registry (see `registry`), so a task
YAML can list `rouge1`, `rouge2`, `rougeL`, `rougeLsum`, `corpus_bleu`, `corpus_chrf`,
`squad_exact_match`, `squad_f1`, `pearson` or `spearman` in its `metric_list`.
"""

from harness.scorers import registry  # noqa: F401  registers the metric names with lm-eval
from harness.scorers.bleu import corpus_score, sentence_bleu
from harness.scorers.calibration import expected_calibration_error
from harness.scorers.correlation import pearson, spearman
from harness.scorers.rouge import ROUGE_TYPES, score_rouge
from harness.scorers.squad import normalize_squad_answer, squad_exact_match, squad_f1

__all__ = [
    "ROUGE_TYPES",
    "corpus_score",
    "expected_calibration_error",
    "normalize_squad_answer",
    "pearson",
    "score_rouge",
    "sentence_bleu",
    "spearman",
    "squad_exact_match",
    "squad_f1",
]
