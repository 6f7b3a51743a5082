"""Every use of lm-eval's private or undocumented API, in one place.

harness builds on lm-eval 0.4.13. Its public face (`lm_eval.simple_evaluate`, `lm_eval.api.model`,
`lm_eval.api.registry`, `lm_eval.api.metrics`, the public methods of `lm_eval.tasks.TaskManager`
and `lm_eval.api.task.Task`) is used directly wherever it is needed. What lies beyond it (private
modules and attributes, helpers of `lm_eval.utils`, attributes swapped on a live object) is
reached through this module only, one small function or name per need, each saying what it relies on.

Upgrading lm-eval: bump the pin, run the test suite (tests/test_tasks_and_mirror.py, tests/test_rag.py
and the runner tests compare against lm-eval itself), and fix what fails here; nothing outside this
file should need to change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lm_eval.api.group import Group
from lm_eval.api.task import Task
from lm_eval.models.utils import (
    configure_pad_token,
    handle_stop_sequences,
    has_bos_prefix,
    normalize_gen_kwargs,
    postprocess_generated_text,
    resolve_max_length,
)
from lm_eval.models.utils_hf import stop_sequences_criteria
from lm_eval.tasks import TaskManager
from lm_eval.tasks._factory import TaskFactory as _LmEvalTaskFactory
from lm_eval.tasks._index import Kind
from lm_eval.tasks._yaml_loader import load_yaml
from lm_eval.utils import (
    apply_template,
    get_rolling_token_windows,
    handle_non_serializable,
    make_disjoint_window,
    simple_parse_args_string,
)

from harness.errors import TaskConfigError, line_in, one_line

__all__ = [
    "Kind",
    "TaskFactory",
    "add_metrics",
    "apply_template",
    "cli_evaluate",
    "configure_pad_token",
    "evaluator_git_hash",
    "fewshot_split",
    "get_rolling_token_windows",
    "handle_non_serializable",
    "handle_stop_sequences",
    "has_bos_prefix",
    "has_fewshot_sampler",
    "lm_eval_bar_modules",
    "load_spec",
    "make_disjoint_window",
    "normalize_gen_kwargs",
    "postprocess_generated_text",
    "read_task_yaml",
    "replace_fewshot_sampler",
    "resolve_max_length",
    "sacreformat",
    "simple_parse_args_string",
    "stop_sequences_criteria",
    "task_manager",
]


# ---------------------------------------------------------------------------------------------- tasks (harness/tasks.py)
# `Kind` (lm_eval.tasks._index) is the kind of a TaskManager.task_index entry: TASK, PY_TASK, GROUP, TAG.


def read_task_yaml(path: str | Path) -> dict[str, Any]:
    """A task YAML as lm-eval reads it (includes merged), its `!function` tags left unresolved."""
    return load_yaml(path, resolve_func=False)


class TaskFactory(_LmEvalTaskFactory):
    """lm-eval's task factory (lm_eval.tasks._factory) with three seams to override instead of its
    private `_load_full_config` and `_build_task`."""

    def config_loaded(self, name: str, yaml_path: Path | None, cfg: dict[str, Any]) -> None:
        """A task's or group's full config (includes merged, before lm-eval builds it); change it in place."""

    def task_built(self, task: Task) -> None:
        """A task just built (its dataset loaded)."""

    def build_failed(self, name: str, yaml_path: Path | None, exc: Exception) -> Exception | None:
        """The error to raise instead of `exc` (from building task `name`, or from task_built), or None: raise it."""
        return None

    def _load_full_config(self, entry, overrides=None) -> dict[str, Any]:
        with _function_imports_named(entry.name, entry.yaml_path):
            cfg = super()._load_full_config(entry, overrides)
        self.config_loaded(entry.name, entry.yaml_path, cfg)
        return cfg

    def _build_task(self, entry, overrides):
        try:
            task = super()._build_task(entry, overrides)
            self.task_built(task)
            return task
        except Exception as exc:
            error = self.build_failed(entry.name, entry.yaml_path, exc)
            if error is None:
                raise
            raise error from exc


@contextlib.contextmanager
def _function_imports_named(name: str, yaml_path: Path | None) -> Iterator[None]:
    """Within the block, a YAML's `!function module.name` that cannot be imported is a TaskConfigError
    naming the task, the module's file and the function (lm-eval's loader, _yaml_loader.
    _import_func_in_yml(qual, base_dir), raises whatever the import raised, with a traceback)."""
    import lm_eval.tasks._yaml_loader as loader

    original = loader._import_func_in_yml

    def resolve(qual: str, base_dir: Path):
        module, _, function = qual.rpartition(".")
        file = (Path(base_dir) / f"{module.replace('.', '/')}.py").resolve()
        where = f"task '{name}'" + (f" ({yaml_path})" if yaml_path else "") + f": !function {qual}"
        if module and file.exists():  # lm-eval's first choice: a file beside the YAML
            try:
                code = loader._load_module_with_cache(file)
            except Exception as exc:
                line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else line_in(exc, str(file))
                raise TaskConfigError(
                    f"{where}: {file}{f':{line}' if line else ''} cannot be imported: {one_line(exc)}"
                ) from exc
            if not hasattr(code, function):
                raise TaskConfigError(f"{where}: {file} has no function '{function}'")
        try:
            return original(qual, base_dir)
        except Exception as exc:
            raise TaskConfigError(f"{where}: no {file} and no importable module '{module}' ({one_line(exc)})") from exc

    loader._import_func_in_yml = resolve
    try:
        yield
    finally:
        loader._import_func_in_yml = original


def task_manager(include_path: list[Path], factory: Callable[[dict[str, Any]], TaskFactory]) -> TaskManager:
    """A TaskManager over include_path only (not lm-eval's own tasks) whose tasks `factory(metadata)` builds."""
    tm = TaskManager(include_path=include_path, include_defaults=False)
    tm._factory = factory(tm._factory._meta)  # lm-eval takes no factory of the caller's
    return tm


def load_spec(tm: TaskManager, name: str) -> Task | Group | list[Task]:
    """One task, group (with its members) or tag (a list of tasks) built, as TaskManager.load builds it,
    without flattening: the objects simple_evaluate takes as `tasks`."""
    return tm._load_spec(name)


# ---------------------------------------------------------------------------------------------- built tasks
def add_metrics(
    task: Task,
    higher_is_better: Mapping[str, bool],
    aggregation: Callable,
    scores: Callable[[dict], Mapping[str, float]],
) -> None:
    """Give a built task more per-document metrics: `scores(doc)` joins what its process_results returns,
    and each metric named in higher_is_better is aggregated with `aggregation`."""
    for name, higher in higher_is_better.items():
        task._aggregation_list[name] = aggregation
        task._higher_is_better[name] = higher
    score = task.process_results

    def process_results(doc, results):
        out = dict(score(doc, results))
        out.update(scores(doc))
        return out

    task.process_results = process_results


def fewshot_split(task: Any) -> str | None:
    """The split a built task draws its few-shot examples from, or None where its config writes them out.
    lm-eval's order (ConfigurableTask.fewshot_docs): fewshot_config.split, its written-out samples, then the
    training, validation or test split."""
    cfg, fewshot = task.config, task.fewshot_cfg
    if fewshot.split is None and cfg.fewshot_config is not None and fewshot.samples is not None:
        return None
    return fewshot.split or cfg.training_split or cfg.validation_split or cfg.test_split


def has_fewshot_sampler(task: Any) -> bool:
    """Whether a built task has a few-shot sampler (ConfigurableTask.sampler) to replace."""
    return hasattr(task, "sampler")


def replace_fewshot_sampler(task: Any, sampler: Any) -> None:
    """Make a built task draw its few-shot examples from `sampler`: an object with the methods of
    lm-eval's ContextSampler that the task calls, sample(n, ...) and set_rnd(rnd)."""
    task.sampler = sampler


# ---------------------------------------------------------------------------------------------- evaluator (harness/engine.py)
@contextlib.contextmanager
def evaluator_git_hash(describe: Callable[[], str | None]) -> Iterator[None]:
    """Within the block, simple_evaluate records `describe()` as results["git_hash"] (lm-eval runs
    `git describe` itself and lets git print to the terminal outside a checkout)."""
    import lm_eval.evaluator

    before = lm_eval.evaluator.get_git_commit_hash
    lm_eval.evaluator.get_git_commit_hash = describe
    try:
        yield
    finally:
        lm_eval.evaluator.get_git_commit_hash = before


# ---------------------------------------------------------------------------------------------- progress bars (harness/quiet.py)
def lm_eval_bar_modules() -> tuple[Any, ...]:
    """The lm-eval modules that draw bars through a module-level `tqdm` name (`from tqdm import tqdm`):
    task building (lm_eval.api.task) and tokenizing (lm_eval.api.model). Swapping that name silences them."""
    import lm_eval.api.model
    import lm_eval.api.task

    return (lm_eval.api.task, lm_eval.api.model)


# ---------------------------------------------------------------------------------------------- metrics (harness/scorers)
def sacreformat(refs, preds):
    """(reference streams, predictions) as lm-eval's bleu/chrf/ter aggregations hand them to sacrebleu."""
    from lm_eval.api.metrics import _sacreformat

    return _sacreformat(refs, preds)


# lm_eval.utils helpers re-exported above (undocumented, so they may move): apply_template (jinja as task
# YAMLs render), handle_non_serializable (how lm-eval writes results JSON), simple_parse_args_string
# (--model_args parsing).


# ---------------------------------------------------------------------------------------------- runner (harness/models)
# lm_eval.models.utils / utils_hf / lm_eval.utils helpers imported above, used as HFLM uses them so that
# tokenisation, stop sequences and rolling windows are lm-eval's: configure_pad_token, has_bos_prefix,
# resolve_max_length, postprocess_generated_text, handle_stop_sequences, normalize_gen_kwargs,
# stop_sequences_criteria, get_rolling_token_windows, make_disjoint_window.
def cli_evaluate() -> None:
    """lm-eval's command line (imported when called: it pulls in lm-eval's whole CLI)."""
    from lm_eval.__main__ import cli_evaluate as run

    run()
