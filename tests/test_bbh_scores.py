"""BBH: a real run's exact_match, per sample and per task, equals what lm-eval's own BBH YAMLs (from
the installed lm-eval, not our copy), their filters (utils.py included) and their metric give for the
very outputs the run recorded, in all four variants."""

from __future__ import annotations

from pathlib import Path

import lm_eval
import numpy as np
import pytest
from lm_eval.tasks import TaskManager

from harness.engine import run_evaluation
from harness.spec import RunSpec
from harness.store import RESULTS, RunStore, read_json, read_samples
from harness.tasks import MirrorTaskFactory

LM_EVAL_BBH = Path(lm_eval.__file__).parent / "tasks" / "bbh"
# plain answers with their stop strings; chain of thought with the regex filter; zero-shot with
# lm-eval's utils.MultiChoiceRegexFilter (flexible-extract) and its strict-match. (Not date_understanding:
# SmolLM2-135M answers it with an empty string, under lm-eval's hf backend too.)
VARIANTS = {
    "bbh_fewshot_boolean_expressions": "fewshot",
    "bbh_cot_fewshot_boolean_expressions": "cot_fewshot",
    "bbh_zeroshot_movie_recommendation": "zeroshot",
    "bbh_cot_zeroshot_movie_recommendation": "cot_zeroshot",
}
LIMIT = 3


@pytest.fixture(scope="module")
def bbh_run(tmp_path_factory, shared_data, smollm2_weights):
    # 128 new tokens instead of the YAMLs' 256/1024 (CPU time), enough for boolean_expressions' CoT
    spec = RunSpec(
        model="smollm2-135m",
        tasks=tuple(VARIANTS),
        limit=LIMIT,
        batch_size=8,
        gen_kwargs={"max_gen_toks": 128},
        data_dir=str(shared_data),
        device="cpu",
        dtype="float32",
    )
    run_dir = RunStore(tmp_path_factory.mktemp("runs")).save(run_evaluation(spec))
    by_task: dict[str, list[dict]] = {}
    for s in read_samples(run_dir):
        by_task.setdefault(s["task"], []).append(s)
    return read_json(run_dir, RESULTS)["results"], by_task


def lm_eval_task(name: str, variant: str, data_dir: Path):
    tm = TaskManager(include_path=[LM_EVAL_BBH / variant], include_defaults=False)
    tm._factory = MirrorTaskFactory(data_dir=data_dir)  # same data; everything else is lm-eval's
    return tm.load([name])["tasks"][name]


@pytest.mark.model
@pytest.mark.parametrize("name", list(VARIANTS))
def test_bbh_exact_match_equals_lm_evals_filters_and_metric(bbh_run, shared_data, name):
    results, by_task = bbh_run
    task = lm_eval_task(name, VARIANTS[name], shared_data)
    ensembles = {f.name: f for f in task._filters}
    ours: dict[str, list[dict]] = {}
    for s in sorted(by_task[name], key=lambda s: s["doc_id"]):
        ours.setdefault(s["filter"], []).append(s)
    assert set(ours) == set(ensembles)
    for filter_name, ensemble in ensembles.items():
        samples = ours[filter_name]
        assert len(samples) == LIMIT
        resps, docs = [s["resps"][0] for s in samples], [s["doc"] for s in samples]
        for make in ensemble.filters:  # lm-eval's pipeline, step by step, on the recorded raw outputs
            resps = list(make().apply(resps, docs))
        assert [s["filtered_resps"][0] for s in samples] == resps
        want = [task.process_results(doc, [r])["exact_match"] for doc, r in zip(docs, resps)]
        assert [s["exact_match"] for s in samples] == want
        assert results[name][f"exact_match,{filter_name}"] == pytest.approx(np.mean(want), abs=1e-12)
    raw = [s["resps"][0][0] for s in by_task[name]]
    assert any(r.strip() for r in raw)  # the model answered something: the comparison is not on empty text
