"""Building lm-eval request instances from real tasks, for runner-level comparisons."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import re
from pathlib import Path

from harness.adapters import task_hooks
from harness.tasks import build_task_manager


def task_instances(
    name: str, data_dir: Path | None = None, num_fewshot: int = 0, limit: int | None = None, include_paths=()
):
    """The Instances lm-eval's evaluator would send a model for `name`."""
    tm = build_task_manager(include_paths, data_dir, hooks=task_hooks())
    task = tm.load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=num_fewshot)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return task.instances


def lm_eval_manager(folder: Path, data_dir: Path):
    """A TaskManager over lm-eval's own task YAMLs in `folder` (not our copies), reading the same mirror."""
    from lm_eval.tasks import TaskManager

    from harness.tasks import MirrorTaskFactory

    tm = TaskManager(include_path=[folder], include_defaults=False)
    tm._factory = MirrorTaskFactory(data_dir=data_dir)
    return tm


def lm_eval_instances(tm, name: str, limit: int | None):
    """The zero-shot Instances lm-eval's evaluator would send a model for `name`, from lm-eval's manager."""
    task = tm.load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=0)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return task.instances


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def squad_official():
    """The official SQuAD v1.1 evaluation script (tests/fixtures/squad_v11_official.py) as a module."""
    spec = importlib.util.spec_from_file_location(
        "squad_v11_official", Path(__file__).parent / "fixtures" / "squad_v11_official.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def perturb(text: str, rng: random.Random) -> str:
    """A plausible model output near a reference: words dropped/swapped, case changed, sentences on lines."""
    words = text.split()
    kind = rng.randrange(5)
    if kind == 0 and len(words) > 3:
        del words[rng.randrange(len(words))]
    elif kind == 1 and len(words) > 3:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == 2:
        words = [w.lower() for w in words]
    elif kind == 3:
        return re.sub(r"([.!?]) ", r"\1\n", text)  # one sentence a line: what rougeLsum splits on
    return " ".join(words[: max(1, len(words) - rng.randrange(4))])


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """Debian's Chromium (the browser tests drive it through Playwright), or None."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def open_browser(playwright):
    """(browser, page, console errors) in headless Chromium; errors collects console errors and page exceptions."""
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return browser, page, errors


def same_value(a, b) -> bool:
    """A value read back from a download against load_runs' (missing is missing however spelt)."""
    missing = [x is None or x == "" or (isinstance(x, float) and math.isnan(x)) for x in (a, b)]
    if any(missing):
        return all(missing)
    if isinstance(b, bool) or isinstance(a, bool):
        return bool(a) == bool(b)
    if isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)
