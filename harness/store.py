"""Where runs live on disk: runs/<run-id>/ with results, samples, spec and environment.

A run folder is written under a hidden temporary name and renamed into place when complete, so a
reader never sees a half-written run.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from lm_eval.utils import handle_non_serializable

if TYPE_CHECKING:
    from harness.engine import FinishedRun

RESULTS = "results.json"
SAMPLES = "samples.jsonl.gz"
SPEC = "spec.json"
ENV = "env.json"

DEFAULT_RUNS_DIR = "runs"


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=handle_non_serializable, ensure_ascii=False)


class RunStore:
    """A folder of run folders."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def new_run_id(self, model_name: str, spec_hash: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model_name).name).strip("-")[:40] or "model"
        return f"{stamp}-{slug}-{spec_hash[:8]}"

    def save(self, run: "FinishedRun") -> Path:
        """Store a finished run under a new id (time, model, spec hash); returns its folder."""
        run_id = self.new_run_id(run.model_name, run.spec_sha256)
        run.results["harness"]["run_id"] = run_id
        run.spec_record["run_id"] = run_id
        return self.write_run(run_id, run.results, flatten_samples(run.samples), run.spec_record, run.env)

    def write_run(
        self,
        run_id: str,
        results: dict[str, Any],
        samples: Iterable[dict[str, Any]],
        spec: dict[str, Any],
        env: dict[str, Any],
    ) -> Path:
        """Write all four files into a temporary folder, then rename it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / run_id
        tmp = self.root / f".tmp-{run_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / RESULTS).write_text(to_json(results), encoding="utf-8")
        (tmp / SPEC).write_text(to_json(spec), encoding="utf-8")
        (tmp / ENV).write_text(to_json(env), encoding="utf-8")
        with gzip.open(tmp / SAMPLES, "wt", encoding="utf-8") as f:
            for sample in samples:
                f.write(json.dumps(sample, default=handle_non_serializable, ensure_ascii=False) + "\n")
        for path in tmp.iterdir():  # durable before it becomes visible
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        os.rename(tmp, final)
        return final

    def runs(self) -> list[Path]:
        """Complete run folders, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if not p.name.startswith(".") and (p / RESULTS).exists())


def flatten_samples(samples: dict[str, list[dict[str, Any]]]):
    """lm-eval's per-task sample logs as one stream, each row naming its task and prompt."""
    for task, rows in samples.items():
        for row in rows:
            args = row.get("arguments") or {}
            first = next(iter(args.values()), {}) if isinstance(args, dict) else (args[0] if args else {})
            prompt = first.get("arg_0") if isinstance(first, dict) else (first[0] if first else None)
            yield {"task": task, "prompt": prompt, **row}


def read_samples(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    with gzip.open(Path(run_dir) / SAMPLES, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_json(run_dir: str | os.PathLike, name: str) -> dict[str, Any]:
    return json.loads((Path(run_dir) / name).read_text(encoding="utf-8"))
