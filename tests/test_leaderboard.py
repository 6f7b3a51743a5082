"""The leaderboard: rankings against pandas, and the page in a real headless Chromium (sorting, sample
browser, hostile model output rendered as inert text, no console errors)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
from clirun import harness
from helpers import chromium_path, open_browser

from harness.reports.leaderboard import build_leaderboard
from harness.store import RunStore

CHROMIUM = chromium_path()
expect = None  # playwright's, once the page fixture has imported it
HOSTILE = [
    '<script>window.__pwned = "script"</script>',
    "<img src=x onerror=\"window.__pwned='img'\">",
    '"><svg onload="window.__pwned=\'svg\'">',
    "</script><script>window.__pwned='break'</script>",
]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, smollm2_weights):
    """A real run's record: the schema the fabricated runs below copy, so that they cannot drift from
    what harness writes."""
    root = tmp_path_factory.mktemp("real")
    out = harness("run", "--tasks", "demo_capitals", "--limit", "4", "--output", str(root))
    assert out.returncode == 0, out.stderr[-2000:]
    (run_dir,) = RunStore(root).runs()
    return RunStore(root).load(run_dir)


PER_TASK = ("results", "ci95", "signatures", "higher_is_better", "n-samples", "configs", "versions", "n-shot")


def write_run(template, store: RunStore, run_id: str, model: str, scores: dict[str, float], shots=None, samples=()):
    """A stored run made from a real one (template: its RunRecord): its task's entries copied under each
    name in `scores` with that main score (acc) and interval, its model renamed, its shots set."""
    src = template.results
    (task,) = src["results"]
    results = copy.deepcopy(src)
    for section in PER_TASK:
        results[section] = {t: copy.deepcopy(src[section][task]) for t in scores}
    for t, v in scores.items():
        results["results"][t].update({"alias": t, "acc,none": v})
        results["ci95"][t]["acc,none"] = [v - 0.02, v + 0.02]
    results["group_subtasks"] = {"a_group_without_a_score": sorted(scores)}  # like demo: its tasks stay columns
    results["harness"]["model"] = {**src["harness"]["model"], "name": model, "sha256": f"sha-{model}"}
    results["harness"]["spec_sha256"] = f"{run_id}-spec"
    spec = copy.deepcopy(template.spec)
    spec["spec"].update({"model": model, "num_fewshot": shots, "tasks": list(scores)})
    spec["tasks"] = {t: copy.deepcopy(template.spec["tasks"][task]) for t in scores}
    env = {**template.env, "started": f"2026-11-{run_id[-2:]}T00:00:00+00:00"}
    return store.write_run(run_id, results, list(samples), spec, env)


def test_rankings_match_pandas(tmp_path, real_run):
    store = RunStore(tmp_path)
    table = {"m1": {"a": 0.5, "b": 0.7, "c": 0.2}, "m2": {"a": 0.6, "b": 0.7, "c": 0.1}, "m3": {"a": 0.4, "b": 0.9}}
    for i, (model, scores) in enumerate(table.items()):
        write_run(real_run, store, f"run-{i:02d}", model, scores)
    board = build_leaderboard(store.runs())
    frame = pd.DataFrame(table).T  # models x tasks
    # HELM's mean win rate: per task, the share of the other models beaten (ties half) = (rank - 1) / (n - 1)
    win = ((frame.rank(method="average") - 1).div(frame.count() - 1)).mean(axis=1)
    macro = frame.mean(axis=1)
    got = {r.model: r for r in board.rows}
    for model in table:
        assert got[model].mean_win_rate == pytest.approx(win[model])
        assert got[model].macro_average == pytest.approx(macro[model])
    assert [r.model for r in board.rows] == list(win.sort_values(ascending=False).index)
    # a later run of the same variant replaces the cell; a 0-shot run is a row of its own
    write_run(real_run, store, "run-10", "m1", {"a": 0.9})
    write_run(real_run, store, "run-11", "m1", {"a": 0.1}, shots=0)
    board = build_leaderboard(store.runs())
    rows = {r.label: r for r in board.rows}
    assert rows["m1"].cells["a"].value == 0.9 and rows["m1"].cells["b"].value == 0.7
    assert rows["m1 (0-shot)"].cells["a"].value == 0.1
    assert all(t["top_level"] for t in board.tasks)


def sample(i: int, output: str, correct: bool, task: str = "a") -> dict:
    return {
        "task": task,
        "doc_id": i,
        "prompt": f"Question {i}: {HOSTILE[i % len(HOSTILE)]}",
        "arguments": [[f"Question {i}", output], [f"Question {i}", "other"]],
        "filtered_resps": [[-1.0, True], [-2.0, False]] if correct else [[-2.0, False], [-1.0, True]],
        "target": 0,
        "metrics": ["acc"],
        "acc": 1.0 if correct else 0.0,
    }


@pytest.fixture(scope="module")
def page(tmp_path_factory, real_run):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    global expect
    expect = playwright.expect
    root = tmp_path_factory.mktemp("board")
    store = RunStore(root / "runs")
    hostile_model = '<b onmouseover="window.__pwned=1">evil</b>-model'
    write_run(
        real_run,
        store,
        "run-01",
        "alpha",
        {"a": 0.3, "b": 0.8},
        samples=[sample(i, HOSTILE[i % 4], correct=i % 3 == 0) for i in range(120)],
    )
    write_run(real_run, store, "run-02", "beta", {"a": 0.6, "b": 0.5})
    write_run(real_run, store, "run-03", hostile_model, {"a": 0.45, 'x"><img src=y onerror=window.__pwned=2>': 0.5})
    out = harness("leaderboard", "--runs", str(root / "runs"), "--out", str(root / "board.html"))
    assert out.returncode == 0, out.stderr
    with playwright.sync_playwright() as p:
        browser, tab, errors = open_browser(p)
        tab.goto((root / "board.html").as_uri())
        tab.wait_for_load_state("load")
        yield tab, errors, root, browser
        browser.close()


def column(tab, index: int) -> list[str]:
    return tab.eval_on_selector_all(
        f"#leaderboard tbody tr > :nth-child({index})", "cells => cells.map(c => c.dataset.v)"
    )


def test_the_table_sorts_by_any_column(page):
    tab, errors, *_ = page
    tab.click("#leaderboard thead th:nth-child(4)")  # task a, descending first
    values = [float(v) for v in column(tab, 4)]
    assert values == sorted(values, reverse=True) and len(values) == 3
    tab.click("#leaderboard thead th:nth-child(4)")
    assert [float(v) for v in column(tab, 4)] == sorted(values)
    tab.click("#leaderboard thead th:nth-child(1)")  # by name (the browser's collation), descending
    names = column(tab, 1)
    assert tab.evaluate("n => n.every((x, i) => i == 0 || n[i - 1].localeCompare(x) >= 0)", names), names
    assert not errors, errors


def test_the_sample_browser_pages_and_filters(page):
    tab, errors, *_ = page
    tab.click("td.cell >> nth=0")
    assert tab.is_visible("#cell-detail")
    tab.click("nav button[data-view=samples]")
    tab.select_option("#sample-model", label="alpha")
    tab.select_option("#sample-task", "a")
    expect(tab.locator("#page-info")).to_have_text("page 1 of 3 (120 of 120 samples)")
    assert len(tab.query_selector_all("#sample-table tbody tr")) == 50
    tab.click("#page-next")
    tab.click("#page-next")
    assert tab.inner_text("#page-info").startswith("page 3 of 3")
    assert len(tab.query_selector_all("#sample-table tbody tr")) == 20
    tab.select_option("#sample-filter", "correct")
    assert tab.inner_text("#page-info") == "page 1 of 1 (40 of 120 samples)"
    assert len(tab.query_selector_all("#sample-table tbody tr.right")) == 40
    tab.select_option("#sample-filter", "incorrect")
    assert "(80 of 120 samples)" in tab.inner_text("#page-info")
    tab.fill("#sample-search", "Question 7:")
    expect(tab.locator("#page-info")).to_contain_text("(1 of 120")
    assert not errors, errors


def test_hostile_text_renders_as_inert_text(page):
    tab, errors, *_ = page
    tab.click("nav button[data-view=samples]")
    tab.select_option("#sample-model", label="alpha")
    tab.select_option("#sample-task", "a")
    tab.select_option("#sample-filter", "all")
    tab.fill("#sample-search", "")
    expect(tab.locator("#sample-table tbody tr")).to_have_count(50)
    text = tab.inner_text("#sample-table tbody")
    for payload in HOSTILE:
        assert payload in text  # shown literally
    assert tab.evaluate("window.__pwned") is None  # and nothing ran
    assert tab.query_selector("#sample-table img, #sample-table svg, #sample-table script") is None
    tab.click("nav button[data-view=board]")
    assert '<b onmouseover="window.__pwned=1">evil</b>-model' in tab.inner_text("#leaderboard")
    tab.hover("#leaderboard tbody th >> text=evil")
    assert tab.evaluate("window.__pwned") is None
    assert not errors, errors
    # the escaping alone holds: without the page's Content-Security-Policy nothing runs either
    _, _, root, browser = page
    bare = browser.new_context(bypass_csp=True).new_page()
    bare.goto((root / "board.html").as_uri())
    bare.click("nav button[data-view=samples]")
    bare.select_option("#sample-model", label="alpha")
    expect(bare.locator("#sample-table tbody tr")).to_have_count(50)
    bare.click("nav button[data-view=board]")
    bare.hover("#leaderboard tbody th >> text=evil")
    assert bare.evaluate("window.__pwned") is None


def test_per_task_and_per_model_views_draw_charts(page):
    tab, errors, root, _ = page
    tab.click("nav button[data-view=task]")
    tab.select_option("#task-select", "a")
    assert len(tab.query_selector_all("#task-chart svg rect.bar")) == 3
    assert len(tab.query_selector_all("#task-chart svg line.err")) == 9  # interval and two whiskers per bar
    tab.click("nav button[data-view=model]")
    tab.select_option("#model-select", label="alpha")
    assert len(tab.query_selector_all("#model-chart svg rect.bar")) == 2
    tab.screenshot(path=str(root / "views.png"), full_page=True)
    assert not errors, errors
