"""Building lm-eval request instances from real tasks, for runner-level comparisons."""

from __future__ import annotations

from pathlib import Path

from harness.tasks import build_task_manager


def task_instances(name: str, data_dir: Path | None = None, num_fewshot: int = 0, limit: int | None = None,
                   include_paths=()):
    """The Instances lm-eval's evaluator would send a model for `name`."""
    tm = build_task_manager(include_paths, data_dir)
    task = tm.load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=num_fewshot)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return task.instances
