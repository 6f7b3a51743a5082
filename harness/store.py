"""Where runs live on disk: runs/<run-id>/ with results, samples, spec and environment.

A run folder is written under a hidden temporary name and renamed into place when complete, so a
reader never sees a half-written run. An sqlite index (runs/index.sqlite, WAL mode, so several runs
may save at once) lists the runs for querying; the folders are the truth and rebuild it. The store
alone reads and writes run folders: everything else takes a `RunRecord` from `RunStore.load`.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.lm_eval_compat import handle_non_serializable
from harness.record import RunRecord, scores_frame
from harness.redact import redact, secret_values

if TYPE_CHECKING:
    import pandas as pd

    from harness.engine import FinishedRun

RESULTS = "results.json"
SAMPLES = "samples.jsonl.gz"
SPEC = "spec.json"
ENV = "env.json"

DEFAULT_RUNS_DIR = "runs"
INDEX = "index.sqlite"
_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, created TEXT, model TEXT, model_sha256 TEXT,
                                 spec_sha256 TEXT, tasks TEXT, scores TEXT);
CREATE TABLE IF NOT EXISTS run_tasks (run_id TEXT, task TEXT, PRIMARY KEY (run_id, task));
"""


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=handle_non_serializable, ensure_ascii=False)


class RunStore:
    """A folder of run folders."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._given = os.fspath(root)  # as the user wrote it, for messages

    def check_writable(self) -> None:
        """Fail before a run, not after it: the store folder exists or can be made, and takes files."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(
                f"run store '{self.root}' is not a writable folder ({exc.strerror}): choose another --output"
            ) from exc

    def new_run_id(self, model_name: str, spec_hash: str) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model_name).name).strip("-")[:40] or "model"
        return f"{stamp}-{slug}-{spec_hash[:8]}"

    def save(self, run: FinishedRun) -> Path:
        """Store a finished run under a new id (time, model, spec hash); returns its folder. The run
        itself is left as it is: the id goes into the written records only."""
        run_id = self.new_run_id(run.model_name, run.spec_sha256)
        results = {**run.results, "harness": {**run.results["harness"], "run_id": run_id}}
        spec = {**run.spec_record, "run_id": run_id}
        return self.write_run(run_id, results, flatten_samples(run.samples), spec, run.env)

    def write_run(
        self,
        run_id: str,
        results: dict[str, Any],
        samples: Iterable[dict[str, Any]],
        spec: dict[str, Any],
        env: dict[str, Any],
    ) -> Path:
        """Write all four files into a temporary folder, then rename it into place."""
        self.check_writable()
        final = self.root / run_id
        tmp = self.root / f".tmp-{run_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        secrets = secret_values()  # API keys and tokens of the environment are masked in every file
        (tmp / RESULTS).write_text(to_json(redact(results, secrets)), encoding="utf-8")
        (tmp / SPEC).write_text(to_json(redact(spec, secrets)), encoding="utf-8")
        (tmp / ENV).write_text(to_json(redact(env, secrets)), encoding="utf-8")
        with gzip.open(tmp / SAMPLES, "wt", encoding="utf-8") as f:
            for sample in samples:
                f.write(json.dumps(redact(sample, secrets), default=handle_non_serializable, ensure_ascii=False) + "\n")
        for path in tmp.iterdir():  # durable before it becomes visible
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        for attempt in range(2, 1000):  # another run saved under the same id this second: take the next
            try:
                os.rename(tmp, final)
                break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                final = self.root / f"{run_id}-{attempt}"
        self._index_run(final)
        return final

    # ------------------------------------------------------------------ index
    def _index(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / INDEX, timeout=120, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_INDEX_SCHEMA)
        return db

    def _index_run(self, run_dir: Path) -> None:
        self._write_index([index_row(run_dir)], replace_all=False)

    def reindex(self) -> int:
        """Rebuild the index from the run folders (the truth); returns the number of runs."""
        rows = [index_row(run_dir) for run_dir in self.runs()]
        self._write_index(rows, replace_all=True)
        return len(rows)

    def _write_index(self, rows: list[dict[str, Any]], replace_all: bool) -> None:
        db = self._index()
        try:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time; readers see before or after
            if replace_all:
                db.execute("DELETE FROM runs")
                db.execute("DELETE FROM run_tasks")
            for row in rows:
                db.execute(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        row["run_id"],
                        row["created"],
                        row["model"],
                        row["model_sha256"],
                        row["spec_sha256"],
                        json.dumps(row["tasks"]),
                        json.dumps(row["scores"]),
                    ),
                )
                db.execute("DELETE FROM run_tasks WHERE run_id = ?", (row["run_id"],))
                db.executemany("INSERT INTO run_tasks VALUES (?, ?)", [(row["run_id"], t) for t in row["tasks"]])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def query(
        self, model: str | None = None, task: str | None = None, spec: str | None = None, since: str | None = None
    ) -> list[dict[str, Any]]:
        """Indexed runs, oldest first, filtered by model (substring), task (glob), spec hash prefix, date (ISO)."""
        if not self.root.is_dir():
            raise UserError(f"run store {self.root} is not a folder: run `harness run` first or give --runs")
        db = self._index()
        try:
            if db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] != len(self.runs()):
                db.close()  # folders copied in, or removed, by hand
                self.reindex()
                db = self._index()
            where, args = ["1"], []
            if model:
                where.append("instr(lower(model), lower(?)) > 0")
                args.append(model)
            if task:
                where.append("run_id IN (SELECT run_id FROM run_tasks WHERE task GLOB ?)")
                args.append(task)
            if spec:
                where.append("spec_sha256 LIKE ?")
                args.append(spec + "%")
            if since:
                where.append("created >= ?")
                args.append(since)
            rows = db.execute(
                f"SELECT run_id, created, model, model_sha256, spec_sha256, tasks, scores FROM runs "
                f"WHERE {' AND '.join(where)} ORDER BY created, run_id",
                args,
            ).fetchall()
        finally:
            db.close()
        keys = ("run_id", "created", "model", "model_sha256", "spec_sha256", "tasks", "scores")
        return [{**dict(zip(keys, r)), "tasks": json.loads(r[5]), "scores": json.loads(r[6])} for r in rows]

    def runs(self) -> list[Path]:
        """Complete run folders, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if not p.name.startswith(".") and (p / RESULTS).exists())

    # ------------------------------------------------------------------ reading runs
    def find(self, ref: str | os.PathLike) -> Path:
        """A run folder given as a path, or as a run id (or unique prefix) in the store."""
        path = Path(ref)
        if (path / RESULTS).is_file():
            return path
        matches = [p for p in self.runs() if p.name.startswith(os.fspath(ref))]
        exact = [p for p in matches if p.name == os.fspath(ref)]  # `ID` is a prefix of `ID-2`, saved the same second
        if exact or len(matches) == 1:
            return (exact or matches)[0]
        if not matches:
            raise UserError(
                f"run '{os.fspath(ref)}' not found: give a run folder or a run id from "
                f"`harness runs --runs {self._given}`"
            )
        raise UserError(
            f"run '{os.fspath(ref)}' is ambiguous in {self._given}: {', '.join(p.name for p in matches[:5])}"
        )

    def load(self, run: str | os.PathLike) -> RunRecord:
        """The record of a run: a run folder, or a run id (or unique prefix) in this store."""
        return read_record(self.find(run))

    def records(self) -> list[RunRecord]:
        """Every complete run, oldest first."""
        return [read_record(p) for p in self.runs()]


def find_run(ref: str, runs_dir: str | os.PathLike) -> Path:
    """A run folder given as a path, or as a run id (or unique prefix) in the store at runs_dir."""
    return RunStore(runs_dir).find(ref)


def read_record(run_dir: str | os.PathLike) -> RunRecord:
    """A run folder as a RunRecord (samples read when first asked for). Folders of older harness
    versions load too: spec.json and env.json may be missing."""
    run_dir = Path(run_dir)
    results = read_json(run_dir, RESULTS)
    spec = read_json(run_dir, SPEC) if (run_dir / SPEC).exists() else {}
    env = read_json(run_dir, ENV) if (run_dir / ENV).exists() else {}
    return RunRecord(
        run_dir.name,
        run_dir,
        results,
        spec,
        env,
        sample_reader=(lambda: read_samples(run_dir)) if (run_dir / SAMPLES).exists() else None,
    )


def as_record(run: RunRecord | str | os.PathLike) -> RunRecord:
    """A record as it is; a run folder read into one."""
    return run if isinstance(run, RunRecord) else read_record(run)


def load_runs(path: str | os.PathLike = DEFAULT_RUNS_DIR) -> pd.DataFrame:
    """A run store (or one run folder) as a DataFrame: one row per run x task x score, with model,
    variant, spec hash, value, stderr, 95 % interval and n (see harness.record.scores_frame)."""
    path = Path(path)
    if (path / RESULTS).is_file():
        return scores_frame([read_record(path)])
    if not path.is_dir():
        raise UserError(f"run store {path} is not a folder: run `harness run` first or give another path")
    return scores_frame(RunStore(path).records())


def index_row(run_dir: Path) -> dict[str, Any]:
    """What the index keeps of a run: ids, model, tasks and each task's main score."""
    record = read_record(run_dir)
    scores = {name: {"metric": main.key, "value": main.value} for name, main in record.main_scores().items()}
    return {
        "run_id": record.run_id,
        "created": record.created,
        "model": record.model.get("name"),
        "model_sha256": record.model.get("sha256"),
        "spec_sha256": record.spec_sha256,
        "tasks": sorted(record.results.get("configs", {})),
        "scores": scores,
    }


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
    """One of a run folder's JSON files; a missing or corrupt one is the user's to fix (UserError)."""
    path = Path(run_dir) / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"not JSON: {exc}"
        raise UserError(
            f"run folder {run_dir} is unreadable: {name} {why} (remove the folder or restore the file)"
        ) from exc
