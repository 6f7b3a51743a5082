"""The leaderboard: rankings against pandas, and the page in a real headless Chromium (sorting, sample
browser, hostile model output rendered as inert text, no console errors)."""

from __future__ import annotations

import copy
import gzip
import json
import re

import pandas as pd
import pytest
from clirun import harness
from helpers import chromium_path, open_browser, same_value

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
    # computed (--no-cache): a run replayed from the session's request cache has no model time, and
    # the efficiency figures copied from it would be empty
    out = harness("run", "--tasks", "demo_capitals", "--limit", "4", "--no-cache", "--output", str(root))
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
def playwright_session():
    """One Playwright for the module's pages (its sync API cannot be started twice at once)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    global expect
    expect = playwright.expect
    with playwright.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(tmp_path_factory, real_run, playwright_session):
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
    browser, tab, errors = open_browser(playwright_session)
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


# ---------------------------------------------------------------------------------- holistic groups
GROUP_METRICS = {"ece": "calibration", "acc_worst_robustness": "robustness", "acc_worst_fairness": "fairness"}


def write_holistic_run(template, store: RunStore, run_id: str, model: str, table: dict[str, dict[str, float]]):
    """write_run, and per task the other groups' figures: `ece` and the worst-case scores stored
    beside acc as the real run stores ece (its stderr and interval entries copied), and `seconds`:
    the model time of the task's efficiency entry (the real run's demo_capitals entry, copied)."""
    run_dir = write_run(template, store, run_id, model, {t: v["acc"] for t, v in table.items()})
    results = json.loads((run_dir / "results.json").read_text())
    env = json.loads((run_dir / "env.json").read_text())
    (entry,) = template.env["efficiency"]["tasks"].values()
    env["efficiency"] = {"run": None, "tasks": {}}
    for task, values in table.items():
        for metric in GROUP_METRICS:
            for section in ("results", "ci95", "signatures"):  # the real run's own ece goes: only the table's
                results[section][task].pop(f"{metric},none", None)
            if metric in values:
                results["results"][task][f"{metric},none"] = values[metric]
                results["results"][task][f"{metric}_stderr,none"] = 0.01
                results["ci95"][task][f"{metric},none"] = [values[metric] - 0.02, values[metric] + 0.02]
        results["higher_is_better"][task]["ece"] = False
        if "seconds" in values:
            env["efficiency"]["tasks"][task] = {**entry, "model_seconds": values["seconds"]}
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "env.json").write_text(json.dumps(env))
    return run_dir


M3 = 'm3, "the third"'  # a comma and quotes: the CSV download must quote them
HOLISTIC = {
    "m1": {
        "a": {"acc": 0.5, "ece": 0.10, "acc_worst_robustness": 0.40, "acc_worst_fairness": 0.45, "seconds": 30.0},
        "b": {"acc": 0.7, "ece": 0.20, "acc_worst_robustness": 0.60, "seconds": 10.0},
    },
    "m2": {
        "a": {"acc": 0.6, "ece": 0.30, "acc_worst_robustness": 0.40, "acc_worst_fairness": 0.50, "seconds": 20.0},
        "b": {"acc": 0.7, "ece": 0.05, "acc_worst_robustness": 0.50, "seconds": 40.0},
    },
    M3: {"a": {"acc": 0.4, "ece": 0.25, "acc_worst_fairness": 0.30, "seconds": 5.0}, "b": {"acc": 0.9}},
}


@pytest.fixture(scope="module")
def holistic_store(tmp_path_factory, real_run):
    store = RunStore(tmp_path_factory.mktemp("holistic") / "runs")
    for i, (model, table) in enumerate(HOLISTIC.items()):
        write_holistic_run(real_run, store, f"run-{i:02d}", model, table)
    return store


def pandas_win_rates(column: str, lower_is_better: bool) -> pd.Series:
    """HELM's mean win rate from pandas' ranks: per task (rank - 1) / (n - 1), ties averaged, over the
    tasks where a model has the figure and at least two models do."""
    frame = pd.DataFrame({m: {t: v.get(column) for t, v in table.items()} for m, table in HOLISTIC.items()}).T
    frame = frame.astype(float).loc[:, frame.notna().sum() >= 2]
    ranks = (-frame if lower_is_better else frame).rank(method="average")
    return ((ranks - 1).div(frame.notna().sum() - 1)).mean(axis=1)


def test_every_group_ranks_by_helm_mean_win_rate(holistic_store):
    board = build_leaderboard(holistic_store.runs())
    rows = {r.model: r for r in board.rows}
    references = {
        "accuracy": pandas_win_rates("acc", False),
        "calibration": pandas_win_rates("ece", True),
        "robustness": pandas_win_rates("acc_worst_robustness", False),
        "fairness": pandas_win_rates("acc_worst_fairness", False),
        "efficiency": pandas_win_rates("seconds", True),  # seconds per 1k docs: the same order as seconds
    }
    for group, expected in references.items():
        for model, row in rows.items():
            if model in expected.index and not pd.isna(expected[model]):
                assert row.win_rates[group] == pytest.approx(expected[model]), (group, model)
            else:
                assert row.win_rates[group] is None, (group, model)
    assert (
        rows[M3].cells == rows[M3].groups["accuracy"] and rows["m1"].mean_win_rate == rows["m1"].win_rates["accuracy"]
    )
    # each cell is the figure the run stores: the worst case under its own name, efficiency per 1k docs
    assert rows["m2"].groups["robustness"]["b"].value == 0.5 and rows[M3].groups["robustness"] == {}
    assert (
        rows["m2"].groups["calibration"]["b"].value == 0.05 and not board.groups["calibration"][0]["higher_is_better"]
    )
    eff = rows["m1"].groups["efficiency"]["a"]
    assert eff.value == pytest.approx(30.0 / eff.extra["requests_computed"] * eff.extra["requests"] / eff.n * 1000)


@pytest.fixture(scope="module")
def holistic_page(tmp_path_factory, holistic_store, playwright_session):
    out = tmp_path_factory.mktemp("holistic-page") / "board.html"
    done = harness("leaderboard", "--runs", str(holistic_store.root), "--out", str(out))
    assert done.returncode == 0, done.stderr
    browser, tab, errors = open_browser(playwright_session)
    tab.goto(out.as_uri())
    tab.wait_for_load_state("load")
    yield tab, errors, out.parent
    browser.close()


def test_each_group_is_a_tab_of_its_own(holistic_page, holistic_store):
    tab, errors, _ = holistic_page
    board = build_leaderboard(holistic_store.runs())
    for group in ("calibration", "robustness", "fairness", "efficiency", "accuracy"):
        tab.click(f".groups button[data-group={group}]")
        visible = tab.eval_on_selector_all(".group", "gs => gs.filter(g => !g.hidden).map(g => g.id)")
        assert visible == [f"group-{group}"]
        table = "#leaderboard" if group == "accuracy" else f"#board-{group}"
        shown = tab.eval_on_selector_all(
            f"{table} tbody tr", "trs => trs.map(tr => [tr.cells[0].dataset.v, tr.cells[1].dataset.v])"
        )
        expected = {r.label: r.win_rates[group] for r in board.rows}
        assert {label: float(v) if v else None for label, v in shown} == pytest.approx(expected), group
    tab.click(".groups button[data-group=efficiency]")
    tab.click("#board-efficiency td.cell >> nth=0")
    assert "tokens per second" in tab.inner_text("#cell-detail")
    tab.click("nav button[data-view=model]")
    tab.select_option("#model-select", label="m1")
    heads = tab.eval_on_selector_all("#model-groups thead th", "ths => ths.map(t => t.textContent)")
    assert [h.split(" ")[0] for h in heads[1:6]] == ["accuracy", "calibration", "robustness", "fairness", "efficiency"]
    first = tab.eval_on_selector_all("#model-groups tbody tr:first-child td", "tds => tds.map(t => t.textContent)")
    m1 = next(r for r in board.rows if r.model == "m1")
    assert first[0] == "mean win rate" and first[1] == f"{m1.win_rates['accuracy']:.4f}"
    assert not errors, errors


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_the_downloads_round_trip_with_load_runs(holistic_page, holistic_store, kind):
    import harness as api

    tab, errors, folder = holistic_page
    tab.click("nav button[data-view=board]")
    with tab.expect_download() as info:
        tab.click(f"#download-{kind}")
    path = folder / f"download.{kind}"
    info.value.save_as(path)
    got = pd.read_csv(path) if kind == "csv" else pd.read_json(path, orient="records", precise_float=True)
    frame = api.load_runs(holistic_store.root)
    stored = {(r["run_id"], r["task"], r["metric"], r["filter"]): r for r in frame.to_dict("records")}
    board = build_leaderboard(holistic_store.runs())
    cells = {(g, r.label, t) for r in board.rows for g, cs in r.groups.items() for t in cs}
    assert len(got) == len(cells) and set(zip(got.tab, got.label, got.task)) == cells
    for row in got.to_dict("records"):
        source = stored[(row["run_id"], row["task"], row["metric"], row["filter"])]
        for column in frame.columns:
            assert same_value(row[column], source[column]), (kind, column, row[column], source[column])
        wins = next(r for r in board.rows if r.label == row["label"]).win_rates[row["tab"]]
        assert same_value(row["win_rate"], wins)
    # the figure each group shows is in its row: the group's score, or the efficiency columns
    robust = got[(got.tab == "robustness") & (got.label == "m2") & (got.task == "b")]
    assert list(robust.metric) == ["acc_worst_robustness"] and list(robust.value) == [0.5]
    eff = got[(got.tab == "efficiency") & (got.label == "m1") & (got.task == "a")]
    assert list(eff.model_seconds) == [30.0] and list(eff.metric) == ["acc"]
    assert not errors, errors


def test_a_real_perturbed_run_fills_the_robustness_group(perturbed_runs, playwright_session, tmp_path):
    """Not hand-set figures: a real run with --perturb robustness and its clean twin, stored; the board
    and its page show the worst case as recomputed here from the run's files alone."""
    clean, perturbed = perturbed_runs
    folder = perturbed.folder
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    with gzip.open(folder / "samples.jsonl.gz", "rt", encoding="utf-8") as f:
        samples = [json.loads(line) for line in f]

    def right(resps, target) -> float:  # the choice of highest log-likelihood is the target
        scores = [r[0] for r in resps]
        return float(scores.index(max(scores)) == target)

    board = build_leaderboard(RunStore(folder.parent).runs())
    (row,) = board.rows  # a clean run and a perturbed run of one model variant are one row
    out = tmp_path / "board.html"
    assert harness("leaderboard", "--runs", str(folder.parent), "--out", str(out)).returncode == 0
    browser, tab, errors = open_browser(playwright_session)
    tab.goto(out.as_uri())
    tab.click(".groups button[data-group=robustness]")
    tasks = {s["task"] for s in samples}
    assert len(tasks) == 2
    for task in sorted(tasks):
        docs = [s for s in samples if s["task"] == task]
        worst = [
            min(
                right(s["filtered_resps"], s["target"]),
                right(s["perturbed"]["mild_mix"]["filtered_resps"], s["target"]),
            )
            for s in docs
        ]
        stored = results["results"][task]["acc_worst_robustness,none"]
        assert stored == pytest.approx(sum(worst) / len(worst))
        cell = row.groups["robustness"][task]
        assert (cell.value, cell.run_id, cell.n) == (stored, perturbed.run_id, len(docs))
        assert list(cell.ci95) == results["ci95"][task]["acc_worst_robustness,none"]
        assert row.cells[task].value == results["results"][task]["acc,none"]  # accuracy stays the clean score
        shown = tab.locator(f'#board-robustness td[data-cell="{row.key}|{task}"]')
        assert float(shown.get_attribute("data-v")) == stored
        assert shown.inner_text().startswith(f"{stored:.4f}")
    assert "acc_worst_robustness" in tab.inner_text("#board-robustness thead")
    # the clean run came wholly from the request cache and the perturbed run is not timed: the
    # efficiency tab says so, and how to get its figures
    assert not row.groups["efficiency"]
    tab.click(".groups button[data-group=efficiency]")
    assert "harness run --no-cache" in tab.inner_text("#group-efficiency .empty-group")
    browser.close()
    assert not errors, errors


def test_a_group_no_run_has_says_how_to_get_it(page):
    tab, errors, *_ = page
    tab.click("nav button[data-view=board]")
    tab.click(".groups button[data-group=robustness]")
    assert "--perturb robustness" in tab.inner_text("#group-robustness .empty-group")
    tab.click(".groups button[data-group=accuracy]")
    assert not errors, errors


def test_every_row_tied_at_the_best_score_is_marked_best(tmp_path, real_run):
    store = RunStore(tmp_path / "runs")
    write_run(real_run, store, "run-01", "alpha", {"a": 0.5, "b": 0.2})
    write_run(real_run, store, "run-02", "beta", {"a": 0.5, "b": 0.7})
    out = tmp_path / "board.html"
    assert harness("leaderboard", "--runs", str(store.root), "--out", str(out)).returncode == 0
    page = out.read_text(encoding="utf-8")
    accuracy = page[page.index('<table id="leaderboard"') :].split("</table>")[0]
    assert sorted(re.findall(r'data-cell="[0-9a-f]+\|(\w+)" class="cell best"', accuracy)) == ["a", "a", "b"]
    # the other groups' copies of the template's figures tie too: both rows are best in each column
    calibration = page[page.index('<table id="board-calibration"') :].split("</table>")[0]
    assert sorted(re.findall(r'data-cell="[0-9a-f]+\|(\w+)" class="cell best"', calibration)) == ["a", "a", "b", "b"]


def test_the_comparison_page_is_titled_by_model_and_variant(tmp_path, real_run):
    store = RunStore(tmp_path / "runs")
    runs = [sample(i, "out", correct=i % 2 == 0) for i in range(6)]
    write_run(real_run, store, "run-01", "alpha", {"a": 0.5}, samples=runs)
    write_run(real_run, store, "run-02", "beta", {"a": 0.6}, shots=5, samples=runs)
    write_run(real_run, store, "run-03", "beta", {"a": 0.7}, shots=5, samples=runs)
    out = tmp_path / "compare.html"
    done = harness("compare", "run-01", "run-02", "--runs", str(store.root), "--out", str(out))
    assert done.returncode == 0, done.stderr
    page_text = out.read_text()
    assert "<title>alpha vs beta (5-shot)</title>" in page_text and "run-01" in page_text
    done = harness("compare", "run-02", "run-03", "--runs", str(store.root), "--out", str(out))
    assert "<title>beta (5-shot) · run-02 vs beta (5-shot) · run-03</title>" in out.read_text()
