"""`harness-lm-eval ...`: lm-eval's own CLI with our runner (`--model harness-hf`) and metrics registered."""

from __future__ import annotations


def main() -> None:
    import harness.models.hf  # noqa: F401  registers harness-hf
    import harness.scorers  # noqa: F401  our metric names (rouge1, corpus_bleu, ...) for the task YAMLs
    from harness.lm_eval_compat import cli_evaluate

    cli_evaluate()
