"""WikiText-2: the raw test file, split into documents as the hub's document-level copy is."""

from __future__ import annotations

from harness.mirror.layout import Layout

LAYOUTS: dict[str, Layout] = {}
