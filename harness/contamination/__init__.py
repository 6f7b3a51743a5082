"""Contamination: evaluation documents found in training or retrieval text by lm-eval's word
n-grams (ngrams), streamed against hashed sets (overlap), per task with OpenCompass's classes and
the longest span (report), from files, folders, indexes, adapters and task splits (sources).

An application room: it builds tasks (harness.tasks) and reads retrieval indexes and adapter cards
as files; harness.finetune and the commands use it; nothing below it imports it.
"""

from harness.contamination.check import check_prompts, check_texts, run_check
from harness.contamination.docs import EvalDoc, doc_hash, eval_split
from harness.contamination.ngrams import DEFAULT_N, normalise, word_ngrams, words
from harness.contamination.overlap import CLEAN, INPUT, INPUT_AND_LABEL, LABEL, DocOverlap, EvalNgrams
from harness.contamination.report import Report, read_flags, report_json, report_markdown

__all__ = [
    "CLEAN",
    "DEFAULT_N",
    "INPUT",
    "INPUT_AND_LABEL",
    "LABEL",
    "DocOverlap",
    "EvalDoc",
    "EvalNgrams",
    "Report",
    "check_prompts",
    "check_texts",
    "doc_hash",
    "eval_split",
    "normalise",
    "read_flags",
    "report_json",
    "report_markdown",
    "run_check",
    "word_ngrams",
    "words",
]
