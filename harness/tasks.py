"""Finding task YAMLs (packaged tasks/ plus --include-path folders) and building lm-eval tasks.

Tasks are lm-eval's: its TaskManager indexes the YAMLs and builds Task/Group objects. The one
thing we add is where data comes from: with a mirror, every task whose dataset the mirror holds
is given lm-eval's own `custom_dataset` hook pointing at it, so nothing touches the network.

Whatever else changes tasks while they are built comes in as a `TaskHook` from the caller (the
engine and the commands wire harness.adapters.task_hooks(), e.g. retrieval for RAG tasks): this
module knows no adapter.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from lm_eval.api.group import Group
from lm_eval.api.task import Task
from lm_eval.tasks import TaskManager

import harness
import harness.scorers  # noqa: F401  registers our metric names (rouge1, corpus_bleu, ...) for task YAMLs
from harness.errors import DataUnavailableError, TaskConfigError, UnknownTaskError, UserError, line_in, one_line
from harness.lm_eval_compat import Kind, TaskFactory, load_spec, read_task_yaml, task_manager
from harness.mirror import guard_absent_fewshot_split, load_from_mirror, mirror_source


def packaged_tasks_dir() -> Path:
    """tasks/ as shipped in the wheel (harness/_tasks), or at the repo root in a source checkout."""
    here = Path(harness.__file__).parent
    wheel = here / "_tasks"
    return wheel if wheel.is_dir() else here.parent / "tasks"


class TaskHook(Protocol):
    """What changes tasks while they are built, beside the mirror (see harness.adapters.task_hooks)."""

    def config_loaded(self, cfg: dict[str, Any], data_dir: Path | None) -> None:
        """Change a task's (or group's) full config in place, before lm-eval builds it."""

    def task_built(self, task: Task) -> None:
        """Change a task lm-eval just built."""


class MirrorTaskFactory(TaskFactory):
    """lm-eval's TaskFactory, reading datasets from a local mirror when one is given, and calling `hooks`."""

    def __init__(
        self, *, meta: dict[str, Any] | None = None, data_dir: Path | None = None, hooks: Sequence[TaskHook] = ()
    ):
        super().__init__(meta=meta)
        self.data_dir = data_dir
        self.hooks = tuple(hooks)

    def config_loaded(self, name: str, yaml_path: Path | None, cfg: dict[str, Any]) -> None:
        _check_metric_names(name, yaml_path, cfg)
        _name_failing_functions(name, cfg)
        path = cfg.get("dataset_path")
        if self.data_dir is not None and path and cfg.get("custom_dataset") is None:
            cfg["custom_dataset"] = functools.partial(load_from_mirror, self.data_dir, path, cfg.get("dataset_name"))
        for hook in self.hooks:
            hook.config_loaded(cfg, self.data_dir)

    def task_built(self, task: Task) -> None:
        guard_absent_fewshot_split(task)  # a mirror without the few-shot split: zero-shot only
        for hook in self.hooks:
            hook.task_built(task)

    def build_failed(self, name: str, yaml_path: Path | None, exc: Exception) -> Exception | None:
        if isinstance(exc, UserError):
            return None
        if isinstance(exc, StopIteration):  # datasets' json builder on an empty file
            return DataUnavailableError(f"task '{name}': its data file is empty")
        # datasets/hub errors come in many classes; name the task and the fix
        if yaml_path is None or not _is_data_error(exc):
            return None
        cfg = read_task_yaml(yaml_path)
        where = f"the mirror {self.data_dir}" if self.data_dir else "the hub (offline? pass --data-dir DIR)"
        return DataUnavailableError(
            f"task '{name}': dataset {cfg.get('dataset_path')}"
            f"{'/' + str(cfg['dataset_name']) if cfg.get('dataset_name') else ''} could not be loaded from {where}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )


def _name_failing_functions(task: str, cfg: dict[str, Any]) -> None:
    """Every function of the task's code (`!function` in its YAML: doc_to_text, process_results,
    an aggregation, ...) raises, if it fails, a TaskConfigError naming the task, its file and itself."""

    def guarded(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: guarded(v) for k, v in value.items()}
        if isinstance(value, list):
            return [guarded(v) for v in value]
        if not inspect.isfunction(value) or getattr(value, "__wrapped__", None) is not None:
            return value  # classes (`class:`, samplers) are lm-eval's to construct
        function = value

        @functools.wraps(function)
        def call(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except UserError:
                raise
            except Exception as exc:
                file = function.__code__.co_filename
                line = line_in(exc, file) or function.__code__.co_firstlineno
                raise TaskConfigError(
                    f"task '{task}': {function.__name__} ({file}:{line}) raised {one_line(exc)}"
                ) from exc

        return call

    for key, value in cfg.items():
        if key not in ("custom_dataset", "metadata"):  # ours, not the task's code
            cfg[key] = guarded(value)


def _is_data_error(exc: BaseException) -> bool:
    names = {type(e).__module__.split(".")[0] for e in _chain(exc)}
    return bool(names & {"datasets", "huggingface_hub", "requests", "urllib3", "fsspec", "aiohttp"}) or any(
        isinstance(e, (ConnectionError, FileNotFoundError, TimeoutError)) for e in _chain(exc)
    )


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


class _TaggedLoader(yaml.SafeLoader):
    """Safe YAML that accepts lm-eval's tags (`!function`) without acting on them: syntax check only."""


_TaggedLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def check_yaml_syntax(folder: Path) -> None:
    """lm-eval's indexer skips a YAML it cannot parse; say which file and line instead."""
    for path in sorted(folder.rglob("*.yaml")):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise TaskConfigError(f"malformed task YAML {path}: not UTF-8 text (byte {exc.start})") from exc
        except OSError as exc:
            raise TaskConfigError(f"task YAML {path} cannot be read: {exc.strerror}") from exc
        try:
            yaml.load(text, Loader=_TaggedLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise TaskConfigError(f"malformed task YAML {where}: {problem}") from exc


def build_task_manager(
    include_paths: list[str] | tuple[str, ...] = (), data_dir: Path | None = None, hooks: Sequence[TaskHook] = ()
) -> TaskManager:
    """A TaskManager over the packaged tasks plus the user's folders (which may override them).

    `hooks` change tasks as they are built: harness's commands pass harness.adapters.task_hooks(),
    without which a RAG task's prompt has no passages."""
    paths = [packaged_tasks_dir()]
    for p in include_paths:
        if not Path(p).is_dir():
            raise UserError(f"--include-path '{p}' is not a folder")
        check_yaml_syntax(Path(p))
        paths.append(Path(p))
    return task_manager(paths, lambda meta: MirrorTaskFactory(meta=meta, data_dir=data_dir, hooks=hooks))


def resolve_task_names(tm: TaskManager, patterns: list[str]) -> list[str]:
    """Expand task names, groups, tags and shell globs (`mmlu_*`) to registered names, in order."""
    return resolve_tasks(tm, patterns).names


@dataclass
class Selection:
    names: list[str]  # what runs
    skipped: dict[str, str]  # task -> why not: a tag's or glob's member whose data the mirror lacks


def resolve_tasks(tm: TaskManager, patterns: list[str], data_dir: Path | None = None) -> Selection:
    """resolve_task_names, and with a mirror: a tag or glob (e.g. `glue`), or a group without a score
    of its own (`super_glue`), runs the members the mirror holds and lists the others as skipped; a
    task named outright, or a group whose score weighs all its members, still fails on missing data,
    with the one-line error of load_tasks. A score-less group the mirror holds whole runs as a group."""
    names: list[str] = []
    skipped: dict[str, str] = {}

    def add(members: list[str]) -> None:
        for m in members:
            why = _missing_from_mirror(tm, m, data_dir)
            if why:
                skipped[m] = why
            elif m not in names:
                names.append(m)

    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matched = sorted(fnmatch.filter(tm.all_subtasks, pattern))
            if not matched:
                raise UnknownTaskError(f"no task matches '{pattern}' (see `harness tasks`)")
            add(matched)
        elif pattern in tm.all_tasks:
            entry = tm.task_index.get(pattern)
            members = _scoreless_group_members(tm, pattern) if data_dir is not None else None
            if entry is not None and entry.kind == Kind.TAG:
                add(sorted(entry.tags))
            elif members and any(_missing_from_mirror(tm, m, data_dir) for m in members):
                add(members)  # a group without a score of its own (super_glue) is a list of tasks, as a tag is
            elif pattern not in names:
                names.append(pattern)
        else:
            close = difflib.get_close_matches(pattern, tm.all_tasks, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else " (see `harness tasks`)"
            raise UnknownTaskError(f"unknown task '{pattern}'{hint}")
    if not names and skipped:
        raise DataUnavailableError(f"the mirror {data_dir} holds the data of none of: {', '.join(skipped)}")
    return Selection(names, skipped)


def _scoreless_group_members(tm: TaskManager, name: str) -> list[str] | None:
    """The leaf tasks of a group that has no aggregate score and lists its members by name, else None."""
    entry = tm.task_index.get(name)
    if entry is None or entry.kind != Kind.GROUP or not entry.cfg or entry.cfg.get("aggregate_metric_list"):
        return None
    members: list[str] = []
    for member in entry.cfg.get("task") or []:
        child = tm.task_index.get(member) if isinstance(member, str) else None
        if child is None:
            return None  # an inline task or a member with overrides: only the group builds it
        sub = _scoreless_group_members(tm, member) if child.kind == Kind.GROUP else None
        if child.kind == Kind.GROUP and sub is None:
            return None
        members += sub if sub is not None else sorted(child.tags) if child.kind == Kind.TAG else [member]
    return members


def _missing_from_mirror(tm: TaskManager, name: str, data_dir: Path | None) -> str | None:
    """Why a plain task cannot load from the mirror, or None (it can, it has bundled data, or no mirror)."""
    entry = tm.task_index.get(name)
    if data_dir is None or entry is None or entry.kind != Kind.TASK or entry.yaml_path is None:
        return None
    cfg = read_task_yaml(entry.yaml_path)
    path, sub = cfg.get("dataset_path"), cfg.get("dataset_name")
    if cfg.get("custom_dataset") is not None or not path or mirror_source(data_dir, path, sub):
        return None
    return f"dataset {path}{'/' + str(sub) if sub else ''} is not in the mirror {data_dir}"


def _check_metric_names(name: str, yaml_path: Path | None, cfg: dict[str, Any]) -> None:
    """An unknown metric name is a config error (lm-eval would try to fetch it from the hub's evaluate
    library, log an error, and fail later with 'None')."""
    import lm_eval.api.metrics  # noqa: F401  fills lm-eval's metric registry
    from lm_eval.api.registry import metric_registry

    for item in cfg.get("metric_list") or []:
        metric = item.get("metric") if isinstance(item, dict) else None
        if isinstance(metric, str) and not item.get("hf_evaluate") and metric not in metric_registry:
            known = ", ".join(sorted(metric_registry.keys()))
            raise TaskConfigError(f"task '{name}' ({yaml_path}): unknown metric '{metric}'; known: {known}")


def load_tasks(tm: TaskManager, names: list[str]) -> list[Task | Group]:
    """Build the tasks (datasets loaded) so data problems surface before any model is loaded."""
    built: list[Task | Group] = []
    for name in names:
        try:
            obj = load_spec(tm, name)
        except UserError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise TaskConfigError(f"task '{name}': invalid task config: {exc}") from exc
        built += obj if isinstance(obj, list) else [obj]
    for task in _leaf_tasks(built):
        if task.has_test_docs() or task.has_validation_docs():
            docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
            if docs is not None and len(docs) == 0:
                raise DataUnavailableError(f"task '{task.config.task}': its evaluation split is empty")
    return built


def _leaf_tasks(objs) -> list[Task]:
    leaves = []
    for obj in objs:
        if isinstance(obj, Group):
            leaves += obj.get_all_tasks(recursive=True)
        elif isinstance(obj, Task):
            leaves.append(obj)
    return leaves


@dataclass
class TaskRow:
    family: str
    name: str
    kind: str
    dataset: str
    data: str  # where its data would come from now: bundled, mirror path, hub, or missing


def list_tasks(tm: TaskManager, data_dir: Path | None) -> list[TaskRow]:
    """Every task and group the manager knows, with its family and where its data comes from."""
    roots = [Path(p).resolve() for p in (tm.include_path or [])]
    rows = []
    for name, entry in sorted(tm.task_index.items()):
        if entry.kind == Kind.TAG or entry.yaml_path is None:
            continue
        yaml_path = Path(entry.yaml_path).resolve()
        root = next((r for r in roots if yaml_path.is_relative_to(r)), yaml_path.parent)
        family = yaml_path.relative_to(root).parts[0] if yaml_path.parent != root else root.name
        if entry.kind == Kind.GROUP:
            rows.append(TaskRow(family, name, "group", "", ""))
            continue
        cfg = read_task_yaml(yaml_path)
        path, sub = cfg.get("dataset_path"), cfg.get("dataset_name")
        dataset = f"{path}{'/' + str(sub) if sub else ''}" if path else ""
        if cfg.get("custom_dataset") is not None:
            data = "bundled"
        elif data_dir is not None and path:
            data = mirror_source(data_dir, path, sub) or "missing from mirror"
        else:
            data = "hub"
        rows.append(TaskRow(family, name, "task", dataset, data))
    return rows
