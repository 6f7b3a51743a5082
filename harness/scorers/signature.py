"""Signatures: a score's metric, options, interval method and library versions in one string, like sacrebleu's.

Format: `name|option:value|...|ci:<method>[|bs:<resamples>|seed:<seed>]|library:version|...`, e.g.
`corpus_bleu|nrefs:3|case:mixed|eff:no|tok:13a|smooth:exp|ci:bootstrap|bs:1000|seed:1234|sacrebleu:2.6.0`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from typing import Iterable, Mapping

from harness.scorers.bootstrap import Estimate

# distribution name -> the name a signature shows
_LABELS = {"scikit-learn": "sklearn", "rouge-score": "rouge_score"}


@functools.lru_cache(maxsize=None)
def library_version(distribution: str) -> str:
    """Installed version of a distribution, or 'unknown'."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def installed_versions(distributions) -> dict[str, str | None]:
    """Installed version of each distribution (None where absent), for run records and cards."""
    out = {}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


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


def format_signature(name: str, options: Mapping[str, object], estimate: Estimate | None,
                     libraries: Iterable[str]) -> str:
    """`name|options|ci...|lib:version...`; None-valued options are left out."""
    parts = [name]
    for key, value in {**options, **estimate_options(estimate)}.items():
        if value is not None:
            parts.append(f"{key}:{_text(value)}")
    parts += [f"{_LABELS.get(lib, lib)}:{library_version(lib)}" for lib in libraries]
    return "|".join(parts)
