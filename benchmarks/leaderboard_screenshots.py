"""Screenshots of a leaderboard page in headless Chromium, and its downloads checked against load_runs.

One PNG per metric group tab (accuracy, calibration, robustness, fairness, efficiency) and one of
the per-model view; then the page's Download CSV / Download JSON files (saved in --downloads) are
read back with pandas and every column of every row compared with `harness.load_runs` of the store.
The README's screenshots (docs/screenshots/) are made this way:

    harness leaderboard --runs RUNS --out board.html
    python benchmarks/leaderboard_screenshots.py board.html RUNS docs/screenshots --downloads /tmp/board
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import open_browser, same_value  # noqa: E402

GROUPS = ("accuracy", "calibration", "robustness", "fairness", "efficiency")
WIDEST_TABLE = "Math.max(0, ...[...document.querySelectorAll('.group:not([hidden]) table')].map(t => t.scrollWidth))"


def shoot(page: Path, out: Path, downloads: Path, width: int, model: str | None) -> list[str]:
    """The screenshots and the two downloads; returns the page's console errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, tab, errors = open_browser(p)
        tab.set_viewport_size({"width": width, "height": 400})
        tab.goto(page.as_uri())
        tab.wait_for_load_state("load")
        for group in GROUPS:
            tab.click(f".groups button[data-group={group}]")
            # as wide as the tab's table (its box scrolls sideways), so that every column is in the picture
            needed = tab.evaluate(WIDEST_TABLE)
            tab.set_viewport_size({"width": max(width, needed + 60), "height": 400})
            tab.screenshot(path=str(out / f"leaderboard-{group}.png"), full_page=True)
        for kind in ("csv", "json"):
            with tab.expect_download() as info:
                tab.click(f"#download-{kind}")
            info.value.save_as(downloads / f"leaderboard.{kind}")
        tab.set_viewport_size({"width": width, "height": 400})
        tab.click("nav button[data-view=model]")
        if model:
            tab.select_option("#model-select", label=model)
        tab.screenshot(path=str(out / "leaderboard-model.png"), full_page=True)
        browser.close()
    return errors


def check_downloads(out: Path, runs: Path) -> int:
    """Every value of both downloads against load_runs; prints a line per file, returns the differences."""
    import pandas as pd

    import harness

    frame = harness.load_runs(runs)
    stored = {(r["run_id"], r["task"], r["metric"], r["filter"]): r for r in frame.to_dict("records")}
    differing = 0
    for kind in ("csv", "json"):
        path = out / f"leaderboard.{kind}"
        got = pd.read_csv(path) if kind == "csv" else pd.read_json(path, orient="records", precise_float=True)
        checked = 0
        for row in got.to_dict("records"):
            source = stored[(row["run_id"], row["task"], row["metric"], row["filter"])]
            for column in frame.columns:
                checked += 1
                if not same_value(row[column], source[column]):
                    differing += 1
                    print(f"{kind}: {column} of {row['run_id']} {row['task']}: {row[column]!r} != {source[column]!r}")
        tabs = got.groupby("tab").size().to_dict()
        print(f"{kind}: {len(got)} rows {tabs}, {checked} values against load_runs, {differing} differing")
    return differing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("page", type=Path)
    ap.add_argument("runs", type=Path, help="the run store the page was made from")
    ap.add_argument("out", type=Path, help="folder for the PNGs and the downloads")
    ap.add_argument("--downloads", type=Path, help="folder for the CSV and JSON (default: out)")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--model", help="the per-model view's model (default: the first)")
    args = ap.parse_args()
    downloads = args.downloads or args.out
    for folder in (args.out, downloads):
        folder.mkdir(parents=True, exist_ok=True)
    errors = shoot(args.page.resolve(), args.out.resolve(), downloads.resolve(), args.width, args.model)
    print("console errors:", errors or "none")
    return 1 if errors or check_downloads(downloads, args.runs) else 0


if __name__ == "__main__":
    sys.exit(main())
