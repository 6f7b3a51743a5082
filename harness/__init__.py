"""harness: an LLM evaluation harness built on lm-eval's task format and numbers."""

__version__ = "0.1.0"
