"""GSM8K: openai/grade-school-math test.jsonl."""

from __future__ import annotations

from harness.mirror.layout import Layout

LAYOUTS: dict[str, Layout] = {}
