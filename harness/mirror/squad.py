"""SQuAD v1.1: the official dev-v1.1.json."""

from __future__ import annotations

from harness.mirror.layout import Layout

LAYOUTS: dict[str, Layout] = {}
