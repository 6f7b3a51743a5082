"""`harness run --perturb`: worst-case scores as HELM computes them, on the real model and data.

One perturbed run (mmlu_anatomy and GLUE's sst2, 8 documents each, HELM's robustness set) and the
same run clean, after it, from the request cache (conftest.perturbed_runs); every test reads those
two records.
"""

from __future__ import annotations

import math
import statistics

import pytest
from clirun import harness
from conftest import PERTURB_LIMIT, PERTURB_TASKS
from test_perturb_helm import SPECS, helm_perturb, helm_python  # noqa: F401  helm_python: a fixture

from harness.errors import BadOptionError, DataUnavailableError
from harness.perturb import plan_perturbations

TASKS, LIMIT = PERTURB_TASKS, PERTURB_LIMIT


@pytest.fixture
def runs(perturbed_runs):
    return perturbed_runs


def rows(record, task):
    return [s.row for s in record.samples() if s.task == task]


@pytest.mark.parametrize("task", TASKS)
def test_worst_case_is_the_worse_of_clean_and_perturbed_per_document(runs, task):
    _, perturbed = runs
    docs = rows(perturbed, task)
    assert len(docs) == LIMIT
    for row in docs:
        clean, mild_mix = row["acc"], row["perturbed"]["mild_mix"]["acc"]
        assert row["acc_worst_robustness"] <= clean
        assert row["acc_worst_robustness"] == min(clean, mild_mix)


@pytest.mark.parametrize("task", TASKS)
def test_worst_case_is_a_score_with_its_own_stderr_and_interval(runs, task):
    _, perturbed = runs
    worst = [row["acc_worst_robustness"] for row in rows(perturbed, task)]
    score = perturbed.tasks[task].score_of("acc_worst_robustness", "none")
    clean = perturbed.tasks[task].score_of("acc", "none")
    assert score is not None and clean is not None
    assert perturbed.tasks[task].main is not None and perturbed.tasks[task].main.metric == "acc"  # main stays clean
    assert score.value == pytest.approx(statistics.fmean(worst))
    assert score.value <= clean.value
    # lm-eval's mean_stderr: the sample standard deviation over sqrt(n)
    assert score.stderr == pytest.approx(statistics.stdev(worst) / math.sqrt(len(worst)))
    assert score.ci95 is not None and score.ci95[0] <= score.value <= score.ci95[1]
    assert "worst_case:robustness" in (score.signature or "")
    assert score.higher_is_better


def test_clean_scores_equal_the_clean_run_and_come_from_the_cache(runs):
    clean, perturbed = runs
    for task in TASKS:
        assert perturbed.tasks[task].score_of("acc", "none").value == clean.tasks[task].score_of("acc", "none").value
    work = clean.env["runner"]
    assert work["requests_computed"] == 0 and work["requests_from_cache"] > 0
    assert clean.spec_sha256 != perturbed.spec_sha256  # the perturbation is part of the run's identity


def test_only_input_fields_are_perturbed_as_helm_perturbs_them(runs, helm_python, tmp_path):  # noqa: F811
    _, perturbed = runs
    info = perturbed.results["harness"]["perturbation"]
    # MMLU's choices (a list, the references) and the answer stay; GLUE's label too
    assert info["fields"]["mild_mix"] == {"mmlu_anatomy": ["question"], "sst2": ["sentence"]}
    for task, field in (("mmlu_anatomy", "question"), ("sst2", "sentence")):
        docs = rows(perturbed, task)
        helm = helm_perturb(
            helm_python,
            {"mild_mix": list(SPECS["mild_mix"])},
            [row["doc"][field] for row in docs],
            None,
            tmp_path,
            ids=[f"id{row['doc_id']}" for row in docs],
        )["mild_mix"]
        ours = [row["perturbed"]["mild_mix"]["doc"].get(field, row["doc"][field]) for row in docs]
        assert ours == helm
        assert all(set(row["perturbed"]["mild_mix"]["doc"]) <= {field} for row in docs)


def test_compare_pairs_the_clean_run_with_the_worst_case(runs):
    from harness.reports.compare import compare_runs

    clean, perturbed = runs
    deltas = {(d.task, d.metric): d for d in compare_runs(clean, perturbed)}
    for task in TASKS:
        d = deltas[(task, "acc → acc_worst_robustness")]
        assert d.test.n == LIMIT and d.test.test == "mcnemar"
        assert d.delta == pytest.approx(perturbed.tasks[task].score_of("acc_worst_robustness", "none").value - d.a)
        assert deltas[(task, "acc")].delta == 0
        # a flip's B output is the perturbed pass's answer (the choice of highest log-likelihood), named
        docs = {row["doc_id"]: row for row in rows(perturbed, task)}
        flipped = {doc for doc, row in docs.items() if row["acc"] != row["acc_worst_robustness"]}
        assert {f["id"] for f in d.flips} == flipped
        for f in d.flips:
            row = docs[f["id"]]
            resps = [r[0] for r in row["perturbed"]["mild_mix"]["filtered_resps"]]
            assert f["b_output"] == f"{row['arguments'][resps.index(max(resps))][1]} [mild_mix]"


def test_check_gates_a_worst_case_metric(runs):
    _, perturbed = runs
    folder = str(perturbed.folder)
    done = harness("check", folder, "--baseline", folder, "--metric", "acc_worst_robustness")
    assert done.returncode == 0 and "acc_worst_robustness" in done.stdout
    clean_folder = str(runs[0].folder)
    missing = harness("check", folder, "--baseline", clean_folder, "--metric", "acc_worst_robustness")
    assert missing.returncode == 2 and "no task scored with acc_worst_robustness" in missing.stderr


def test_fairness_runs_what_its_word_lists_allow(shared_data):
    without = plan_perturbations(("fairness",), None)
    assert list(without.members) == ["gender_pronouns"] and set(without.skipped) == {"dialect", "person_name"}
    full = plan_perturbations(("fairness",), shared_data)
    assert list(full.members) == ["dialect", "gender_pronouns", "person_name"] and not full.skipped
    with pytest.raises(DataUnavailableError, match="SAE_to_AAVE_mapping.json"):
        plan_perturbations(("dialect",), None)
    with pytest.raises(BadOptionError, match="unknown perturbation 'typo'"):
        plan_perturbations(("typo",), None)


def test_an_unknown_perturbation_is_one_line():
    done = harness("run", "--tasks", "sst2", "--perturb", "robustness,typo")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "unknown perturbation 'typo'" in done.stderr


class _Leaf:
    task_name = "t"

    def aggregation(self):
        from lm_eval.api.metrics import f1_score, mean

        return {"f1": f1_score, "loss": mean}


def test_worst_case_of_pairs_and_of_lower_is_better_scores():
    """f1's (gold, prediction) items: the wrong one is the worse; a lower-is-better score: the higher."""
    from lm_eval.api.metrics import f1_score

    from harness.scorers.worst_case import add_worst_case

    clean = [(1, 1, 0.2), (0, 1, 0.9), (0, 0, 0.1)]  # gold, prediction, loss
    perturbed = [(1, 0, 0.5), (0, 0, 0.3), (0, 0, 0.1)]

    def rows(docs):
        return [{"doc_id": i, "filter": "none", "f1": (g, p), "loss": x} for i, (g, p, x) in enumerate(docs)]

    results = {"results": {"t": {"f1,none": 0.0, "loss,none": 0.0}}, "higher_is_better": {"t": {"loss": False}}}
    samples = {"t": rows(clean)}
    without = add_worst_case(results, samples, {"p": {"t": rows(perturbed)}}, {"robustness": ("p",)}, [_Leaf()])
    assert without == {}
    assert [r["f1_worst_robustness"] for r in samples["t"]] == [(1, 0), (0, 1), (0, 0)]
    assert [r["loss_worst_robustness"] for r in samples["t"]] == [0.5, 0.9, 0.1]
    scores = results["results"]["t"]
    assert scores["f1_worst_robustness,none"] == f1_score([(1, 0), (0, 1), (0, 0)])
    assert scores["loss_worst_robustness,none"] == pytest.approx(0.5)
    assert results["higher_is_better"]["t"]["loss_worst_robustness"] is False
