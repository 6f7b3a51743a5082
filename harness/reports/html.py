"""Self-contained HTML pages from the jinja2 templates in reports/: CSS and JS inlined, no network.

Everything from models and data reaches a page escaped: jinja2 autoescapes every value in the
markup, data for scripts travels as JSON inside a non-executable <script type="application/json">
with <, > and & escaped, and the scripts put text into the page with textContent only. A
Content-Security-Policy with a fresh nonce lets the page's own scripts run and nothing else, so
even markup that slipped through could not execute.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path
from typing import Any

import harness


def reports_dir() -> Path:
    """reports/ as shipped in the wheel (harness/_reports), or at the repo root in a source checkout."""
    here = Path(harness.__file__).parent
    wheel = here / "_reports"
    return wheel if wheel.is_dir() else here.parent / "reports"


def script_json(obj: Any) -> str:
    """JSON that is safe inside a <script> element: no </script>, <!--, or line separators."""
    text = json.dumps(_finite(obj), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def _finite(obj: Any) -> Any:
    """NaN and infinities as null (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def render_page(template: str, assets: tuple[str, ...], **context: Any) -> str:
    """Render reports/<template> with the named CSS/JS files of reports/ inlined."""
    import jinja2
    from markupsafe import Markup

    root = reports_dir()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    inlined = {name.replace(".", "_"): Markup((root / name).read_text(encoding="utf-8")) for name in assets}
    return env.get_template(template).render(
        nonce=secrets.token_urlsafe(18), script_json=lambda o: Markup(script_json(o)), **inlined, **context
    )
