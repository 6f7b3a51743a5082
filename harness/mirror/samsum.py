"""SAMSum: JSONL re-exports of the hub dataset."""

from __future__ import annotations

from harness.mirror.layout import Layout

LAYOUTS: dict[str, Layout] = {}
