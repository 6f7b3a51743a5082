"""The strategy ladder: one task family evaluated under several strategies (zero-shot, few-shot,
retrieval, a LoRA adapter ...), each a stored run, so that one report can set them side by side.

A ladder is a small YAML file: a name, the metric to compare on, and rungs, each a task (and
optionally shots or an adapter). The bundled ladders live in harness/ladders/; a path works too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError

LADDERS_DIR = Path(__file__).resolve().parent / "ladders"
FROM_CLI = "from-cli"  # a rung whose adapter is the one given on the command line
RUNG_KEYS = {"name", "task", "num_fewshot", "adapter"}


@dataclass(frozen=True)
class Rung:
    name: str
    task: str
    num_fewshot: int | None = None
    adapter: str | None = None


@dataclass(frozen=True)
class Ladder:
    name: str
    metric: str | None
    description: str
    rungs: tuple[Rung, ...]
    source: str


@dataclass
class RungRun:
    rung: Rung
    run_dir: Path | None  # None: skipped
    seconds: float = 0.0
    skipped: str | None = None


def bundled_ladders() -> list[str]:
    return sorted(p.stem for p in LADDERS_DIR.glob("*.yaml"))


def load_ladder(ref: str) -> Ladder:
    """A bundled ladder by name (samsum, squad) or a ladder YAML file."""
    path = Path(ref)
    if not path.suffix:
        path = LADDERS_DIR / f"{ref}.yaml"
        if not path.is_file():
            raise UserError(
                f"no ladder '{ref}': bundled ladders are {', '.join(bundled_ladders())}, or give a YAML file"
            )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"ladder {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"ladder {path}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rungs"), list) or not data["rungs"]:
        raise UserError(f"ladder {path}: expected a mapping with a non-empty list 'rungs'")
    rungs = []
    for i, entry in enumerate(data["rungs"], 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
            raise UserError(f"ladder {path}: rung {i} needs a 'task'")
        unknown = set(entry) - RUNG_KEYS
        if unknown:
            raise UserError(
                f"ladder {path}: rung {i} has unknown keys {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(RUNG_KEYS))})"
            )
        shots = entry.get("num_fewshot")
        if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 0):
            raise UserError(f"ladder {path}: rung {i} num_fewshot must be a non-negative integer")
        rungs.append(Rung(str(entry.get("name") or entry["task"]), entry["task"], shots, entry.get("adapter")))
    names = [r.name for r in rungs]
    if len(set(names)) != len(names):
        raise UserError(f"ladder {path}: rung names must differ")
    return Ladder(
        str(data.get("ladder") or path.stem),
        data.get("metric"),
        str(data.get("description") or ""),
        tuple(rungs),
        str(path),
    )


def rung_spec(base, rung: Rung, adapter: str | None):
    """The run spec of one rung: the ladder's common settings with the rung's task, shots and adapter."""
    changes: dict[str, Any] = {"tasks": (rung.task,)}
    if rung.num_fewshot is not None:
        changes["num_fewshot"] = rung.num_fewshot
    if rung.adapter is not None:
        changes["adapter"] = adapter if rung.adapter == FROM_CLI else rung.adapter
    return dataclasses.replace(base, **changes)


def run_ladder(
    ladder: Ladder, base, store, adapter: str | None = None, use_cache: bool = True, echo: Callable[[str], None] = print
) -> list[RungRun]:
    """Run every rung (a stored run each) and return them in order; a rung that needs an adapter
    none was given for is skipped. Runs go through the request cache, so running a ladder again,
    or with one rung added, computes only what is new."""
    from harness.engine import run_evaluation

    done = []
    for i, rung in enumerate(ladder.rungs, 1):
        if rung.adapter == FROM_CLI and not adapter:
            echo(f"[{i}/{len(ladder.rungs)}] {rung.name}: skipped (give --adapter DIR, e.g. from `harness finetune`)")
            done.append(RungRun(rung, None, skipped="no --adapter given"))
            continue
        echo(f"[{i}/{len(ladder.rungs)}] {rung.name}: {rung.task}")
        started = time.perf_counter()
        finished = run_evaluation(rung_spec(base, rung, adapter), **({} if use_cache else {"request_cache": None}))
        run_dir = store.save(finished)
        done.append(RungRun(rung, run_dir, time.perf_counter() - started))
    return done
