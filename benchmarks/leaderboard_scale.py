"""Leaderboard at scale: a synthetic store of 100 models x 60 tasks, its page size and its load time
in headless Chromium (issue bar: under 3 s and under 10 MB).

    python benchmarks/leaderboard_scale.py [--models 100] [--tasks 60] [--samples 50]

Each cell gets `--samples` stored samples (prompt, output, target, score): 100 x 60 x 50 = 300,000.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness.reports.leaderboard import leaderboard_from_store, render_leaderboard
from harness.store import RunStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import chromium_path, open_browser  # noqa: E402  the browser tests' headless Chromium


def synthetic_store(root: Path, models: int, tasks: int, samples: int, seed: int = 0) -> RunStore:
    rng = random.Random(seed)
    store = RunStore(root)
    names = [f"task_{t:02d}" for t in range(tasks)]
    for m in range(models):
        skill = rng.random()
        scores = {t: min(1.0, max(0.0, skill * 0.6 + rng.random() * 0.4)) for t in names}
        rows = [
            {
                "task": t,
                "doc_id": d,
                "doc_hash": f"{t}-{d}",
                "prompt": f"Question {d} of {t}: " + "lorem ipsum " * 8,
                "arguments": [[f"q{d}", " yes"], [f"q{d}", " no"]],
                "filtered_resps": [[-1.0, True], [-2.0, False]]
                if rng.random() < scores[t]
                else [[-2.0, False], [-1.0, True]],
                "target": 0,
                "metrics": ["acc"],
                "acc": 0.0,
            }
            for t in names
            for d in range(samples)
        ]
        for r in rows:
            r["acc"] = 1.0 if r["filtered_resps"][0][0] > r["filtered_resps"][1][0] else 0.0
        results = {
            "results": {t: {"alias": t, "acc,none": v, "acc_stderr,none": 0.02} for t, v in scores.items()},
            "ci95": {t: {"acc,none": [v - 0.04, v + 0.04]} for t, v in scores.items()},
            "higher_is_better": {t: {"acc": True} for t in names},
            "n-samples": {t: {"effective": samples, "original": samples} for t in names},
            "configs": {t: {} for t in names},
            "harness": {"model": {"name": f"model-{m:03d}", "sha256": f"{m:064x}"}, "spec_sha256": f"{m:064x}"},
        }
        store.write_run(
            f"20261123T{m:06d}Z-model-{m:03d}",
            results,
            rows,
            {"spec": {"model": f"model-{m:03d}"}},
            {"started": f"2026-11-23T00:00:{m % 60:02d}+00:00"},
        )
    return store


def load_time(page: Path) -> tuple[float, float, list[str]]:
    """Seconds to the load event and to the first sample page shown, and console errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, tab, errors = open_browser(p)
        start = time.perf_counter()
        tab.goto(page.as_uri(), wait_until="load")
        loaded = time.perf_counter() - start
        tab.click("nav button[data-view=samples]")
        start = time.perf_counter()
        tab.wait_for_selector("#sample-table tbody tr")
        samples = time.perf_counter() - start
        browser.close()
    return loaded, samples, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="board-scale-"))
    t0 = time.perf_counter()
    synthetic_store(work / "runs", args.models, args.tasks, args.samples)
    t1 = time.perf_counter()
    board, samples = leaderboard_from_store(work / "runs")
    page = render_leaderboard(board, samples, work / "board.html")
    t2 = time.perf_counter()
    beside = (
        sum(f.stat().st_size for f in (work / "board.html.samples").glob("*"))
        if (work / "board.html.samples").is_dir()
        else 0
    )
    print(f"store: {args.models} models x {args.tasks} tasks x {args.samples} samples, written in {t1 - t0:.1f} s")
    print(
        f"page: {page.stat().st_size / 1e6:.2f} MB (+ {beside / 1e6:.2f} MB of samples beside it), built in {t2 - t1:.1f} s"
    )
    if chromium_path() is None:
        print("Chromium not found: load time not measured")
        sys.exit(0)
    loaded, first, errors = load_time(page)
    print(f"Chromium: load event {loaded:.2f} s, first sample page {first:.2f} s, console errors: {len(errors)}")
    for e in errors[:5]:
        print("  ", e)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
