"""GLUE: the GLUE-distribution dev TSVs."""

from __future__ import annotations

from harness.mirror.layout import Layout

LAYOUTS: dict[str, Layout] = {}
