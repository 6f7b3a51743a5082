"""Signatures: a score's metric, options, interval method and library versions in one string, like sacrebleu's.

Format: `name|option:value|...|ci:<method>[|bs:<resamples>|seed:<seed>]|library:version|...`, e.g.
`corpus_bleu|nrefs:3|case:mixed|eff:no|tok:13a|smooth:exp|ci:bootstrap|bs:1000|seed:1234|sacrebleu:2.6.0`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping

from harness.provenance import installed_versions
from harness.scorers.bootstrap import Estimate

# distribution name -> the name a signature shows
_LABELS = {"scikit-learn": "sklearn", "rouge-score": "rouge_score"}


@functools.cache
def library_version(distribution: str) -> str:
    """Installed version of a distribution, or 'unknown'."""
    return installed_versions((distribution,))[distribution] or "unknown"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)  # lists (e.g. regexes_to_ignore) stay readable


def estimate_options(estimate: Estimate | None) -> dict[str, object]:
    """How a score's stderr and interval were obtained."""
    if estimate is None:
        return {"ci": "none"}
    if estimate.method == "bootstrap":
        return {"ci": "bootstrap", "bs": estimate.resamples, "seed": estimate.seed}
    return {"ci": estimate.method}


def format_signature(
    name: str, options: Mapping[str, object], estimate: Estimate | None, libraries: Iterable[str]
) -> str:
    """`name|options|ci...|lib:version...`; None-valued options are left out."""
    parts = [name]
    for key, value in {**options, **estimate_options(estimate)}.items():
        if value is not None:
            parts.append(f"{key}:{_text(value)}")
    parts += [f"{_LABELS.get(lib, lib)}:{library_version(lib)}" for lib in libraries]
    return "|".join(parts)
