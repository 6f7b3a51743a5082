"""`harness check`, `harness baseline` and `harness compare` on real runs of the bundled model."""

from __future__ import annotations

import json
import math
from xml.etree import ElementTree

import pytest
from clirun import harness as cli
from helpers import chromium_path, open_browser

from harness.store import RunStore, read_samples

pytestmark = pytest.mark.model
TASKS = "demo_arithmetic,demo_capitals"


def harness(*args: str):
    return cli(*args, env={"GITHUB_STEP_SUMMARY": None})  # a CI's step summary is not this test's to append to


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A baseline run, the same run again (unchanged), and a planted regression: the arithmetic
    task without its three worked examples (a worse prompt); capitals is the same in all three.
    The unchanged run is computed again (--no-cache), not replayed from the request cache, so that
    its passing also says the runner gives the same answers twice."""
    root = tmp_path_factory.mktemp("gate")
    made = {}
    for name, extra in (("base", []), ("same", ["--no-cache"]), ("worse", ["--num-fewshot", "0"])):
        out = harness("run", "--tasks", TASKS, "--output", str(root / name), *extra)
        assert out.returncode == 0, out.stderr[-2000:]
        (made[name],) = RunStore(root / name).runs()
    return root, made


def mcnemar_two_sided(a_only: int, b_only: int) -> float:
    """The exact McNemar p-value from its definition: two-sided binomial(n, 1/2) tail on the discordant pairs."""
    n, k = a_only + b_only, min(a_only, b_only)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def test_an_unchanged_candidate_passes_and_a_worse_prompt_fails(runs):
    root, made = runs
    out = harness("baseline", str(made["base"]), "--out", str(root / "baseline.json"))
    assert out.returncode == 0, out.stderr
    baseline = json.loads((root / "baseline.json").read_text())
    assert set(baseline["tasks"]) == {"demo_arithmetic", "demo_capitals"}
    assert len(baseline["tasks"]["demo_arithmetic"]["scores"]) == baseline["tasks"]["demo_arithmetic"]["n"]

    same = harness("check", str(made["same"]), "--baseline", str(root / "baseline.json"))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "harness check: PASS" in same.stdout

    summary, junit = root / "summary.md", root / "junit.xml"
    worse = harness(
        "check",
        str(made["worse"]),
        "--baseline",
        str(root / "baseline.json"),
        "--max-drop",
        "0.05",
        "--summary",
        str(summary),
        "--junit",
        str(junit),
    )
    assert worse.returncode == 1, worse.stdout + worse.stderr
    text = summary.read_text()
    assert text in worse.stdout  # the CI log shows what the step summary gets
    assert "harness check: FAIL" in text and "1 of 2 tasks regressed" in text
    base_acc = json.loads((made["base"] / "results.json").read_text())["results"]["demo_arithmetic"][
        "exact_match,first_number"
    ]
    worse_acc = json.loads((made["worse"] / "results.json").read_text())["results"]["demo_arithmetic"][
        "exact_match,first_number"
    ]
    why = next(line for line in text.splitlines() if line.startswith("- demo_arithmetic:"))
    assert f"fell by {base_acc - worse_acc:.4f}" in why and "95 % CI of Δ [" in why and "mcnemar p = " in why
    # the p-value is McNemar's on the documents the two runs disagree on
    b, w = (
        {s["doc_id"]: s["exact_match"] for s in read_samples(made[k]) if s["task"] == "demo_arithmetic"}
        for k in ("base", "worse")
    )
    a_only = sum(b[d] == 1 and w[d] == 0 for d in b)
    b_only = sum(b[d] == 0 and w[d] == 1 for d in b)
    p = mcnemar_two_sided(a_only, b_only)
    assert f"mcnemar p = {p:.3g}" in why
    # the verdict itself, from the definition: a drop (per-sample scores, not results.json) beyond
    # --max-drop that McNemar's test calls significant at 0.05
    drop = (a_only - b_only) / len(b)
    assert (worse.returncode == 1) == (drop > 0.05 and p < 0.05)
    # each condition on its own must hold: the same drop judged at a level below its p (not
    # significant), and the same p under an allowance just above its drop (not large enough), pass
    for option, value in (("--alpha", f"{p / 2:.6g}"), ("--max-drop", f"{drop + 1e-6:.6f}")):
        verdict = harness("check", str(made["worse"]), "--baseline", str(root / "baseline.json"), option, value)
        assert verdict.returncode == 0, (option, value, verdict.stdout + verdict.stderr)
    same_scores = {s["doc_id"]: s["exact_match"] for s in read_samples(made["same"]) if s["task"] == "demo_arithmetic"}
    assert same_scores == b  # computed again, every document scores as before: nothing to flag
    cases = {c.get("name"): c for c in ElementTree.parse(junit).getroot()}
    assert cases["demo_arithmetic"].find("failure") is not None
    assert cases["demo_capitals"].find("failure") is None
    # per-task threshold: allowing arithmetic a drop of 1.0 lets the same candidate pass
    lenient = harness("check", str(made["worse"]), "--baseline", str(made["base"]), "--max-drop", "demo_arithmetic=1")
    assert lenient.returncode == 0, lenient.stdout


def test_compare_lists_flips_and_significance_per_task(runs):
    root, made = runs
    out = harness(
        "compare",
        str(made["base"]),
        str(made["worse"]),
        "--out",
        str(root / "compare.html"),
        "--md",
        str(root / "compare.md"),
    )
    assert out.returncode == 0, out.stderr
    text = (root / "compare.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| demo_")}
    assert set(rows) == {"demo_arithmetic", "demo_capitals"}
    assert "mcnemar" in rows["demo_arithmetic"] and "mcnemar" in rows["demo_capitals"]
    assert " 0 / 0 |" in rows["demo_capitals"]  # the same prompt: nothing flipped, p = 1
    assert "### demo_arithmetic:" in text and "flipped samples" in text
    assert "### demo_capitals:" not in text
    page = (root / "compare.html").read_text()
    assert "demo_arithmetic" in page and "<script nonce=" in page
    flipped = int(rows["demo_arithmetic"].split("|")[-2].split("/")[0]) + int(
        rows["demo_arithmetic"].split("|")[-2].split("/")[1]
    )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    with sync_api.sync_playwright() as p:
        browser, tab, errors = open_browser(p)
        tab.goto((root / "compare.html").as_uri())
        tab.click("button.show[data-kind=flips] >> nth=0")  # tasks are sorted: demo_arithmetic first
        shown = len(tab.query_selector_all("#detail-table tbody tr"))
        browser.close()
    assert shown == min(flipped, 50) and not errors, errors
