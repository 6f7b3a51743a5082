"""NQ-open: the original NQ-open.dev.jsonl."""

from __future__ import annotations

from harness.mirror.layout import Layout

LAYOUTS: dict[str, Layout] = {}
