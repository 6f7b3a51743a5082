"""DialogSum: the official cylnlp/dialogsum JSONL files."""

from __future__ import annotations

from harness.mirror.layout import Layout

LAYOUTS: dict[str, Layout] = {}
