"""`harness ladder`: the strategy ladder on real runs of the bundled model over real SAMSum, its
numbers recomputed from the stored samples with rouge-score."""

from __future__ import annotations

import re

import numpy as np
import pytest
from clirun import harness
from rouge_score import rouge_scorer

from harness.ladder import load_ladder
from harness.store import RunStore, read_json, read_samples

pytestmark = pytest.mark.model
LIMIT = 4


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory, shared_data, smollm2_weights):
    root = tmp_path_factory.mktemp("ladder")
    out = harness(
        "ladder",
        "--task",
        "samsum",
        "--limit",
        str(LIMIT),
        "--data-dir",
        str(shared_data),
        "--output",
        str(root / "runs"),
        "--md",
        str(root / "ladder.md"),
        "--out",
        str(root / "ladder.html"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return root, out


def table(markdown: str) -> dict[str, list[str]]:
    """Rung name -> its cells, from the ladder's markdown table."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 13 and cells[0] not in ("rung",):
            rows[cells[0]] = cells
    return rows


def test_samsum_ladder_rows_equal_rouge_score_on_the_stored_outputs(ladder_run):
    root, out = ladder_run
    rows = table((root / "ladder.md").read_text())
    assert list(rows) == ["zero-shot", "few-shot (3)", "LoRA"]
    assert rows["LoRA"][2].startswith("skipped: no --adapter given")
    assert "LoRA: skipped (give --adapter DIR" in out.stdout
    runs = {p.name: p for p in RunStore(root / "runs").runs()}
    assert len(runs) == 2  # one stored run per rung that ran
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True, split_summaries=False)
    per_doc = {}
    for name in ("zero-shot", "few-shot (3)"):
        cells = rows[name]
        run_dir = runs[cells[12]]
        task = cells[1]
        samples = [s for s in read_samples(run_dir) if s["task"] == task]
        assert len(samples) == LIMIT and cells[4] == str(LIMIT)
        # rouge-score on the stored output and reference: the rung's score is their mean
        scores = {s["doc_id"]: scorer.score(s["target"], s["filtered_resps"][0])["rougeL"].fmeasure for s in samples}
        assert float(cells[2]) == pytest.approx(np.mean(list(scores.values())), abs=6e-5)
        stderr = read_json(run_dir, "results.json")["results"][task]["rougeL_stderr,none"]
        lo, hi = map(float, re.findall(r"-?\d+\.\d+", cells[3]))
        assert (lo, hi) == pytest.approx((float(cells[2]) - 1.96 * stderr, float(cells[2]) + 1.96 * stderr), abs=2e-4)
        per_doc[name] = scores
    # the few-shot rung against zero-shot: paired by document, delta = mean of the differences
    assert set(per_doc["zero-shot"]) == set(per_doc["few-shot (3)"])
    delta = np.mean([per_doc["few-shot (3)"][d] - per_doc["zero-shot"][d] for d in per_doc["zero-shot"]])
    assert float(rows["few-shot (3)"][5].strip("*")) == pytest.approx(delta, abs=6e-5)
    assert rows["few-shot (3)"][8] == "paired bootstrap"
    lo, hi = map(float, re.findall(r"[-+]\d+\.\d+", rows["few-shot (3)"][6]))
    assert lo <= delta <= hi
    html = (root / "ladder.html").read_text()
    assert "few-shot (3)" in html and "skipped: no --adapter given" in html


def test_a_second_ladder_run_reads_every_request_from_the_cache(ladder_run, shared_data):
    root, _ = ladder_run
    again = harness(
        "ladder",
        "--task",
        "samsum",
        "--limit",
        str(LIMIT),
        "--data-dir",
        str(shared_data),
        "--output",
        str(root / "runs2"),
        "--md",
        str(root / "again.md"),
    )
    assert again.returncode == 0, again.stderr[-3000:]
    first, second = table((root / "ladder.md").read_text()), table((root / "again.md").read_text())
    for name in ("zero-shot", "few-shot (3)"):
        assert second[name][2] == first[name][2]  # same score
        assert second[name][10] == f"0 ({LIMIT} requests cached)"  # nothing computed


def test_bundled_ladders_name_tasks_that_exist():
    from harness.tasks import build_task_manager

    known = set(build_task_manager((), None).all_tasks)
    for name in ("samsum", "squad"):
        for rung in load_ladder(name).rungs:
            assert rung.task in known, (name, rung.task)
