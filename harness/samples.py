"""A stored run's samples, typed: one row of lm-eval's per-document log, and what the browser shows of it."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# per-sample scores that say right or wrong (not ROUGE, F1 or perplexity)
RIGHT_OR_WRONG = frozenset({"acc", "acc_norm", "exact_match", "squad_exact_match"})


@dataclass(frozen=True)
class SampleView:
    """What the sample browser shows of one stored sample: prompt, output, target, score, correct."""

    id: Any
    prompt: str
    output: str
    target: str
    metric: str | None
    score: Any
    correct: bool | None  # only where the metric says right or wrong per sample

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Sample:
    """One stored sample row (lm-eval's per-document log, plus the task and prompt harness adds)."""

    row: Mapping[str, Any]

    @property
    def task(self) -> str | None:
        return self.row.get("task")

    @property
    def doc_id(self) -> Any:
        return self.row.get("doc_id")

    @property
    def filter(self) -> str:
        return self.row.get("filter", "none")

    @property
    def key(self) -> str:
        """The document: id and content hash, so a changed document is not paired with the old one."""
        return f"{self.row.get('doc_id')}:{self.row.get('doc_hash', '')}"

    @property
    def target(self) -> Any:
        return self.row.get("target")

    def score(self, metric: str) -> Any:
        """The per-sample score of a metric, where it is a number (corpus metrics log items instead)."""
        value = self.row.get(metric)
        return value if isinstance(value, (int, float)) else None

    @functools.cached_property
    def view(self) -> SampleView:
        return sample_view(self.row)


def sample_view(row: Mapping[str, Any]) -> SampleView:
    """What the sample browser shows of one stored sample row."""
    args = row.get("arguments") or []
    resps = row.get("filtered_resps") or []
    metric = next((m for m in row.get("metrics") or [] if isinstance(row.get(m), (int, float))), None)
    score = row.get(metric) if metric else None
    choices = [a[1] for a in args if isinstance(a, (list, tuple)) and len(a) > 1 and isinstance(a[1], str)]
    target = row.get("target")
    if resps and isinstance(resps[0], (list, tuple)) and len(choices) == len(resps):  # multiple choice
        best = max(range(len(resps)), key=lambda i: resps[i][0])
        output = choices[best]
        try:
            target = choices[int(target)]  # type: ignore[arg-type]
        except (TypeError, ValueError, IndexError):
            pass
    else:
        output = resps[0] if resps and isinstance(resps[0], str) else json.dumps(resps)[:500]
    return SampleView(
        row.get("doc_id"),
        str(row.get("prompt") or ""),
        str(output),
        target if isinstance(target, str) else json.dumps(target, ensure_ascii=False),
        metric,
        score,
        bool(score == 1.0) if metric in RIGHT_OR_WRONG and score is not None else None,
    )
