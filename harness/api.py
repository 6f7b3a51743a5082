"""The Python API, for notebooks and scripts: what `harness run` does, as a function.

    import harness
    record = harness.evaluate(model="smollm2-135m", tasks=["demo_capitals"], limit=5)
    frame = harness.load_runs("runs")

`harness run` builds its spec with make_spec() and stores it with run_and_store(), as evaluate()
does, so a command and a call with the same arguments store the same run (same spec hash). Bad
input raises a harness.errors.UserError subclass (the command prints it on one line, exit 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import BadOptionError
from harness.quiet import libraries_quieted

if TYPE_CHECKING:
    from harness.engine import FinishedRun
    from harness.record import RunRecord
    from harness.spec import RunSpec
    from harness.store import RunStore

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_OUTPUT = "runs"


@dataclass(frozen=True)
class StoredRun:
    """A run just stored: its folder, and what the evaluation returned (what `harness run` prints)."""

    store: RunStore
    run_dir: Path
    finished: FinishedRun

    def record(self) -> RunRecord:
        """The typed run record, read back from the store: the one place the API loads a run."""
        return self.store.load(self.run_dir)


def evaluate(
    model: str = DEFAULT_MODEL,
    tasks: str | Sequence[str] = (),
    *,
    num_fewshot: int | None = None,
    limit: float | None = None,
    batch_size: int | str = 8,
    seed: int | None = None,
    gen_kwargs: str | Mapping[str, Any] | None = None,
    apply_chat_template: bool = False,
    system_instruction: str | None = None,
    data_dir: str | os.PathLike | None = None,
    include_paths: Sequence[str | os.PathLike] = (),
    device: str | None = None,
    dtype: str | None = None,
    compile: bool = False,
    bootstrap_iters: int = 1000,
    adapter: str | os.PathLike | None = None,
    merge_adapter: bool = False,
    api: str | None = None,
    api_model: str | None = None,
    api_key_env: str | None = None,
    max_concurrency: int | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    tokenizer: str | None = None,
    perturb: str | Sequence[str] | None = None,
    output: str | os.PathLike = DEFAULT_OUTPUT,
    use_cache: bool = True,
    verbose: bool = False,
) -> RunRecord | None:
    """Evaluate `model` on `tasks`, store the run under `output`, and return its record.

    The arguments are `harness run`'s options: `tasks` names, groups or globs (a list, or one
    comma-separated string); `limit` a count of docs per task, or a fraction below 1; `batch_size`
    a number or "auto"; `gen_kwargs` a dict or "k=v,k=v"; `data_dir` a local data mirror (default
    $HARNESS_DATA_DIR, else the hub); `model` may be a server's base URL (http://HOST:PORT/v1), with
    `api`, `api_model`, `api_key_env` (the variable's name), `max_concurrency`, `timeout`,
    `max_retries`, `tokenizer` as `harness run`'s options of those names; `use_cache=False` is `--no-cache`; `verbose=True` is
    `harness -v` (the libraries' logging and warnings, otherwise quiet during the call). Returns None
    on the processes other than the main one of a data-parallel launch (`accelerate launch script.py`).
    """
    spec = make_spec(
        model,
        tasks,
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        seed=seed,
        gen_kwargs=gen_kwargs,
        apply_chat_template=apply_chat_template,
        system_instruction=system_instruction,
        data_dir=data_dir,
        include_paths=include_paths,
        device=device,
        dtype=dtype,
        compile=compile,
        bootstrap_iters=bootstrap_iters,
        adapter=adapter,
        merge_adapter=merge_adapter,
        api=api,
        api_model=api_model,
        api_key_env=api_key_env,
        max_concurrency=max_concurrency,
        timeout=timeout,
        max_retries=max_retries,
        tokenizer=tokenizer,
        perturb=perturb,
    )
    with contextlib.nullcontext() if verbose else libraries_quieted():
        stored = run_and_store(spec, output, use_cache=use_cache)
    return None if stored is None else stored.record()


def make_spec(model: str, tasks: str | Sequence[str], **options: Any) -> RunSpec:
    """The run spec of `harness run`'s options (named as RunSpec's fields), read as the command reads
    them; the engine checks the rest (positive limit, shots, tasks that exist, ...)."""
    from harness.perturb import parse_perturb
    from harness.spec import RunSpec, parse_batch_size, parse_gen_kwargs

    if not isinstance(model, str) or not model.strip():
        raise BadOptionError(f"model {model!r}: expected an alias, a local path or a hub id")
    known = {f.name for f in dataclasses.fields(RunSpec)} - {"model", "tasks"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise BadOptionError(f"unknown option {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for name in ("num_fewshot", "seed", "bootstrap_iters"):
        _check_int(name, options.get(name))
    if (options.get("bootstrap_iters") or 0) < 0:
        raise BadOptionError("--bootstrap-iters must be 0 or more")
    gen_kwargs = options.pop("gen_kwargs", None)
    if isinstance(gen_kwargs, Mapping):
        try:
            gen_kwargs = json.dumps(dict(gen_kwargs))  # checked exactly as --gen-kwargs JSON is
        except (TypeError, ValueError) as exc:
            raise BadOptionError(f"gen_kwargs: expected plain values ({exc})") from None
    _check_served(model, options)
    for name in ("data_dir", "adapter"):
        if options.get(name) is not None:
            options[name] = str(options[name])
    perturb = options.pop("perturb", None)
    if isinstance(perturb, (list, tuple)) and all(isinstance(p, str) for p in perturb):
        perturb = ",".join(perturb)
    if perturb is not None and not isinstance(perturb, str):
        raise BadOptionError(f"perturb {perturb!r}: expected names, comma-separated")
    return RunSpec(
        model=model,
        tasks=task_names(tasks),
        limit=coerce_limit(options.pop("limit", None)),
        batch_size=parse_batch_size(options.pop("batch_size", 8)),
        gen_kwargs=parse_gen_kwargs(gen_kwargs),
        include_paths=tuple(str(p) for p in options.pop("include_paths", ())),
        perturb=parse_perturb(perturb),
        **options,
    )


def run_and_store(
    spec: RunSpec, output: str | os.PathLike = DEFAULT_OUTPUT, use_cache: bool = True
) -> StoredRun | None:
    """Evaluate a spec and store the run in the run store `output` (checked writable first).

    None on a process other than the main one of a data-parallel run (the main one stores it).
    """
    from harness.engine import run_evaluation
    from harness.store import RunStore

    store = RunStore(output)
    store.check_writable()
    finished = run_evaluation(spec, **({} if use_cache else {"request_cache": None}))
    if finished is None:
        return None
    return StoredRun(store, store.save(finished), finished)


def task_names(tasks: str | Sequence[str]) -> tuple[str, ...]:
    """`--tasks a,b` or ["a", "b"] (items may hold commas too) as a tuple of names."""
    items: list[Any] = list(tasks) if isinstance(tasks, (list, tuple, set)) else [tasks]
    names: list[str] = [item for item in items if isinstance(item, str)]
    if len(names) < len(items):
        raise BadOptionError(f"tasks {tasks!r}: expected task names, groups or globs")
    return tuple(name.strip() for item in names for name in item.split(",") if name.strip())


def coerce_limit(limit: float | None) -> float | int | None:
    """`--limit`: 1 and over a count of docs (an int, as lm-eval takes it), below 1 a fraction."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        raise BadOptionError(f"--limit {limit!r}: expected a count, or a fraction below 1")
    return int(limit) if limit >= 1 else limit


def _check_served(model: str, options: dict[str, Any]) -> None:
    """Served-model options need a served model, and a served model takes no weights options."""
    from harness.models.served import is_served

    served = ("api", "api_model", "api_key_env", "max_concurrency", "timeout", "max_retries", "tokenizer")
    given = [k for k in served if options.get(k) is not None]
    if is_served(model):
        if options.get("adapter"):
            raise BadOptionError("--adapter needs local weights: a served model's adapters are the server's to load")
    elif given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise BadOptionError(f"{flags}: only for a served model (--model http://HOST:PORT/v1)")


def _check_int(name: str, value: Any) -> None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    raise BadOptionError(f"{name} {value!r}: expected a whole number")
