"""QA families (SQuAD v1.1, NQ-open, GSM8K): mirror vs raw files and published counts, requests vs
lm-eval's own YAMLs, and a real run's scores vs the official SQuAD script and lm-eval's filters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import lm_eval
import numpy as np
import pytest
import yaml
from conftest import REPO
from helpers import read_jsonl, squad_official, task_instances
from lm_eval.api.metrics import exact_match_hf_evaluate
from lm_eval.api.registry import get_filter
from lm_eval.tasks import TaskManager

from harness.engine import run_evaluation
from harness.errors import DataUnavailableError
from harness.mirror import load_from_mirror
from harness.spec import RunSpec
from harness.store import RESULTS, SPEC, RunStore, read_json, read_samples
from harness.tasks import MirrorTaskFactory, build_task_manager, list_tasks

LM_EVAL_TASKS = Path(lm_eval.__file__).parent / "tasks"
OUR_TASKS = REPO / "tasks"
K = 5  # samples a question in gsm8k_cot_self_consistency_k5

official = squad_official()


def squad_questions(shared_data) -> list[dict]:
    """Every question of the official dev JSON, walked here independently of the mirror."""
    data = json.loads((shared_data / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    return [
        dict(qa, title=article["title"], context=para["context"])
        for article in data
        for para in article["paragraphs"]
        for qa in para["qas"]
    ]


# ------------------------------------------------------------------------------ the mirror


def test_squad_mirror_is_the_official_dev_file_in_the_hub_schema(shared_data):
    ds = load_from_mirror(shared_data, "rajpurkar/squad", "plain_text")
    assert list(ds) == ["validation"] and "train" in ds.absent_splits
    rows = ds["validation"]
    # published: 10,570 questions over 48 articles and 2,067 paragraphs
    assert rows.num_rows == 10570
    assert (len(set(rows["title"])), len(set(rows["context"]))) == (48, 2067)
    assert list(rows.features) == ["id", "title", "context", "question", "answers"]
    raw = squad_questions(shared_data)
    assert len(raw) == rows.num_rows
    for row, qa in zip(rows, raw):
        assert row == {
            "id": qa["id"],
            "title": qa["title"],
            "context": qa["context"],
            "question": qa["question"],
            "answers": {
                "text": [a["text"] for a in qa["answers"]],
                "answer_start": [a["answer_start"] for a in qa["answers"]],
            },
        }


def test_nq_open_mirror_is_the_original_dev_file(shared_data):
    ds = load_from_mirror(shared_data, "google-research-datasets/nq_open", None)
    assert list(ds) == ["validation"] and "train" in ds.absent_splits
    raw = read_jsonl(shared_data / "nq_open" / "NQ-open.dev.jsonl")
    assert ds["validation"].num_rows == len(raw) == 3610  # published dev size
    assert ds["validation"].to_list() == [{"question": r["question"], "answer": r["answer"]} for r in raw]
    assert load_from_mirror(shared_data, "google-research-datasets/nq_open", "nq_open")["validation"].num_rows == 3610


def test_gsm8k_mirror_is_the_original_test_file(shared_data):
    ds = load_from_mirror(shared_data, "openai/gsm8k", "main")
    assert list(ds) == ["test"] and "train" in ds.absent_splits
    raw = read_jsonl(shared_data / "gsm8k" / "test.jsonl")
    assert ds["test"].num_rows == len(raw) == 1319  # published test size
    assert ds["test"].to_list() == raw
    with pytest.raises(DataUnavailableError, match="socratic"):
        load_from_mirror(shared_data, "openai/gsm8k", "socratic")


def test_qa_tasks_are_listed_as_reachable_from_the_mirror(shared_data):
    rows = {r.name: r for r in list_tasks(build_task_manager(data_dir=shared_data), shared_data)}
    expected = {
        "squad": "squad",
        "nq_open": "nq_open",
        "gsm8k": "gsm8k",
        "gsm8k_cot": "gsm8k",
        "gsm8k_cot_zeroshot": "gsm8k",
        "gsm8k_cot_llama": "gsm8k",
        "gsm8k_cot_self_consistency": "gsm8k",
        "gsm8k_cot_self_consistency_k5": "gsm8k",
    }
    for name, family in expected.items():
        assert rows[name].family == family and rows[name].data.startswith(str(shared_data / family)), rows[name]


# ------------------------------------------------------------------------------ tasks vs lm-eval's


@pytest.mark.parametrize(
    "path",
    [
        "gsm8k/gsm8k.yaml",
        "gsm8k/gsm8k-cot.yaml",
        "gsm8k/gsm8k-cot-self-consistency.yaml",
        "gsm8k/gsm8k-cot-zeroshot.yaml",
        "gsm8k/gsm8k-cot-llama.yaml",
        "nq_open/nq_open.yaml",
    ],
)
def test_yaml_is_lm_evals_own_file(path):
    assert (OUR_TASKS / path).read_bytes() == (LM_EVAL_TASKS / path).read_bytes()


def lm_eval_instances(folder: str, name: str, data_dir: Path, shots: int, limit: int):
    tm = TaskManager(include_path=[LM_EVAL_TASKS / folder], include_defaults=False)
    tm._factory = MirrorTaskFactory(data_dir=data_dir)
    task = tm.load([name])["tasks"][name]
    task.set_config(key="num_fewshot", value=shots)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return task.instances


@pytest.mark.parametrize(
    ("folder", "name", "shots"),
    [
        ("gsm8k", "gsm8k", 0),
        ("gsm8k", "gsm8k_cot", 8),
        ("gsm8k", "gsm8k_cot_zeroshot", 0),
        ("gsm8k", "gsm8k_cot_llama", 8),
        ("gsm8k", "gsm8k_cot_self_consistency", 8),
        ("nq_open", "nq_open", 0),
    ],
)
def test_requests_equal_lm_evals_own_yaml(shared_data, folder, name, shots):
    ours = task_instances(name, shared_data, num_fewshot=shots, limit=3)
    theirs = lm_eval_instances(folder, name, shared_data, shots, limit=3)
    assert [(r.args, r.repeats) for r in ours] == [(r.args, r.repeats) for r in theirs]
    assert len(ours) == 3


def test_self_consistency_k5_is_lm_evals_variant_with_5_samples(shared_data):
    ours = task_instances("gsm8k_cot_self_consistency_k5", shared_data, num_fewshot=8, limit=3)
    theirs = lm_eval_instances("gsm8k", "gsm8k_cot_self_consistency", shared_data, 8, limit=3)
    assert [r.args for r in ours] == [r.args for r in theirs]
    assert {r.repeats for r in ours} == {K} and {r.repeats for r in theirs} == {64}
    assert ours[0].args[1]["do_sample"] is True and ours[0].args[1]["temperature"] == 0.2
    # its filters are lm-eval's score-first and majority vote (maj@64 there: a vote over every sample)
    our_filters = {
        f["name"]: f["filter"]
        for f in yaml.safe_load((OUR_TASKS / "gsm8k/gsm8k-cot-self-consistency-k5.yaml").read_text())["filter_list"]
    }
    their_filters = {
        f["name"]: f["filter"]
        for f in yaml.safe_load((LM_EVAL_TASKS / "gsm8k/gsm8k-cot-self-consistency.yaml").read_text())["filter_list"]
    }
    assert our_filters == {"score-first": their_filters["score-first"], f"maj@{K}": their_filters["maj@64"]}


def test_squad_prompt_is_lm_evals_squadv2_prompt(shared_data):
    from lm_eval.tasks.squadv2.task import SQuAD2

    requests = task_instances("squad", shared_data, limit=4)
    rows = load_from_mirror(shared_data, "rajpurkar/squad", "plain_text")["validation"].select(range(4))
    # SQuAD2.doc_to_text does not use the task object (building one would go to the hub)
    assert [r.args[0] for r in requests] == [SQuAD2.doc_to_text(None, row) for row in rows]
    assert requests[0].args[1]["until"] == ["\n"]


@pytest.mark.parametrize(("name", "shots"), [("gsm8k", 5), ("nq_open", 1)])
def test_few_shot_from_the_absent_train_split_is_a_one_line_error(shared_data, name, shots):
    with pytest.raises(
        DataUnavailableError,
        match=rf"'{name}': {shots}-shot examples come from split 'train'.*"
        r"--num-fewshot 0",
    ) as caught:
        task_instances(name, shared_data, num_fewshot=shots, limit=2)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "block"),
    [
        (
            "squad",
            r"Title: (?P<title>[^\n]*)\n\nBackground: (?P<context>.*?)\n\nQuestion: (?P<question>[^\n]*)\n\nAnswer: (?P<answer>[^\n]*)\n\n",
        ),
        (
            "squad_rag_bm25",
            r"Background: (?P<title>[^:\n]*): (?P<context>.*?)\n\nQuestion: (?P<question>[^\n]*)\n\nAnswer: (?P<answer>[^\n]*)\n\n",
        ),
        ("squad_closedbook", r"Question: (?P<question>[^\n]*)\n\nAnswer: (?P<answer>[^\n]*)\n\n"),
    ],
)
def test_squad_few_shot_examples_are_dev_questions_of_other_articles(shared_data, name, block):
    """Offline (no train split) SQuAD few-shot draws dev questions, never from the asked article:
    each example is a real dev question with its own paragraph and first gold answer."""
    questions = {}
    for qa in squad_questions(shared_data):
        questions.setdefault(qa["question"], []).append((qa["title"], qa["context"], qa["answers"][0]["text"]))
    rows = load_from_mirror(shared_data, "rajpurkar/squad", "plain_text")["validation"].select(range(60))
    requests = task_instances(name, shared_data, num_fewshot=2, limit=60)
    assert len(requests) == 60
    seen = set()
    for request, row in zip(requests, rows):
        prompt = request.args[0]
        examples = list(re.finditer(block, prompt, flags=re.S))[:2]
        assert len(examples) == 2 and examples[0].start() == 0, prompt[:300]
        for ex in examples:
            sources = [
                (t, c, a)
                for t, c, a in questions[ex["question"]]
                if "title" not in block or (t, c) == (ex["title"], ex["context"])
            ]
            assert any(a == ex["answer"] for _, _, a in sources)  # a question text can recur (2 answers)
            assert all(t != row["title"] for t, _, _ in sources), (row["title"], ex["question"])
            seen.add(ex["question"])
    assert len(seen) > 100  # drawn per question, not one fixed pair
    again = task_instances(name, shared_data, num_fewshot=2, limit=60)
    assert [r.args[0] for r in again] == [r.args[0] for r in requests]  # the few-shot seed decides


# ------------------------------------------------------------------------------ a real run


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, shared_data, smollm2_weights):
    """One real run of SmolLM2 over the QA tasks, a few docs each, stored like any run."""
    spec = RunSpec(
        model="smollm2-135m",
        tasks=("squad", "nq_open", "gsm8k_cot", "gsm8k_cot_self_consistency_k5"),
        limit=2,
        batch_size=10,
        gen_kwargs={"max_gen_toks": 96},
        data_dir=str(shared_data),
        device="cpu",
        dtype="float32",
    )
    run_dir = RunStore(tmp_path_factory.mktemp("runs")).save(run_evaluation(spec))
    by_task: dict[str, list[dict]] = {}
    for s in read_samples(run_dir):
        by_task.setdefault(s["task"], []).append(s)
    return read_json(run_dir, RESULTS)["results"], by_task, read_json(run_dir, SPEC)


def rows_by_filter(samples: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        out.setdefault(s["filter"], []).append(s)
    return out


def lm_eval_filtered(filter_steps: list[dict], resps: list[list[str]], docs: list[dict]) -> list:
    """lm-eval's filter pipeline (its registry, its YAML's steps) applied to recorded raw responses."""
    for step in filter_steps:
        kwargs = {k: v for k, v in step.items() if k != "function"}
        resps = list(get_filter(step["function"])(**kwargs).apply(resps, docs))
    return resps


def lm_eval_yaml(path: str) -> dict:
    return yaml.safe_load((LM_EVAL_TASKS / path).read_text())


def gsm8k_exact_match(prediction: str, doc: dict, metric: dict) -> float:
    """lm-eval's exact_match with its GSM8K YAML options, against lm-eval's GSM8K CoT target."""
    options = {k: metric[k] for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore")}
    gold = doc["answer"].split("####")[-1].strip()
    return float(exact_match_hf_evaluate(predictions=[prediction], references=[gold], **options)["exact_match"])


@pytest.mark.model
def test_squad_scores_equal_the_official_v11_script(qa_run, shared_data):
    results, by_task, _ = qa_run
    samples = sorted(by_task["squad"], key=lambda s: s["doc_id"])
    golds = {qa["id"]: [a["text"] for a in qa["answers"]] for qa in squad_questions(shared_data)}
    predictions = {}
    for s in samples:
        prediction = s["resps"][0][0]
        assert s["filtered_resps"] == [prediction]  # scored as generated: no filter, official normalisation only
        truths = golds[s["doc"]["id"]]
        assert s["target"] == truths
        assert s["squad_exact_match"] == float(
            official.metric_max_over_ground_truths(official.exact_match_score, prediction, truths)
        )
        assert s["squad_f1"] == official.metric_max_over_ground_truths(official.f1_score, prediction, truths)
        predictions[s["doc"]["id"]] = prediction
    # the official evaluate() over exactly the evaluated questions, on its 0-100 scale
    data = json.loads((shared_data / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    subset = [
        {"paragraphs": [{"qas": [qa for qa in p["qas"] if qa["id"] in predictions]} for p in a["paragraphs"]]}
        for a in data
    ]
    want = official.evaluate(subset, predictions)
    assert results["squad"]["squad_exact_match,none"] * 100 == pytest.approx(want["exact_match"], abs=1e-9)
    assert results["squad"]["squad_f1,none"] * 100 == pytest.approx(want["f1"], abs=1e-9)
    assert len(samples) == 2


@pytest.mark.model
def test_gsm8k_cot_exact_match_equals_lm_evals_filters_and_metric(qa_run):
    results, by_task, spec = qa_run
    config = lm_eval_yaml("gsm8k/gsm8k-cot.yaml")
    (metric,) = config["metric_list"]
    rows = rows_by_filter(by_task["gsm8k_cot"])
    assert set(rows) == {f["name"] for f in config["filter_list"]} == {"strict-match", "flexible-extract"}
    extracted = set()
    for f in config["filter_list"]:
        samples = rows[f["name"]]
        want = lm_eval_filtered(f["filter"], [s["resps"][0] for s in samples], [s["doc"] for s in samples])
        assert [s["filtered_resps"][0] for s in samples] == want
        scores = [gsm8k_exact_match(p, s["doc"], metric) for p, s in zip(want, samples)]
        assert [s["exact_match"] for s in samples] == scores
        assert results["gsm8k_cot"][f"exact_match,{f['name']}"] == pytest.approx(np.mean(scores))
        extracted |= set(want)
    assert extracted - {"[invalid]"}  # some answer was extracted: the comparison was not all-invalid
    assert spec["tasks"]["gsm8k_cot"]["num_fewshot"] == 8


@pytest.mark.model
def test_self_consistency_reports_maj_at_k_and_keeps_every_sample(qa_run):
    results, by_task, spec = qa_run
    task = "gsm8k_cot_self_consistency_k5"
    assert {f"exact_match,maj@{K}", "exact_match,score-first"} <= set(results[task])
    their_filters = {
        f["name"]: f["filter"] for f in lm_eval_yaml("gsm8k/gsm8k-cot-self-consistency.yaml")["filter_list"]
    }
    (metric,) = lm_eval_yaml("gsm8k/gsm8k-cot.yaml")["metric_list"]
    rows = rows_by_filter(by_task[task])
    assert set(rows) == {"score-first", f"maj@{K}"}
    samples = rows[f"maj@{K}"]
    assert len(samples) == 2
    for s in samples:
        assert len(s["resps"]) == 1 and len(s["resps"][0]) == K  # one request, all k samples recorded
    # repeats are k draws, not one answer copied k times
    assert any(len(set(s["resps"][0])) > 1 for s in samples), [s["resps"][0] for s in samples]
    for ours, theirs in ((f"maj@{K}", "maj@64"), ("score-first", "score-first")):
        rows_ = rows[ours]
        want = lm_eval_filtered(their_filters[theirs], [s["resps"][0] for s in rows_], [s["doc"] for s in rows_])
        assert [s["filtered_resps"][0] for s in rows_] == want
        scores = [gsm8k_exact_match(p, s["doc"], metric) for p, s in zip(want, rows_)]
        assert results[task][f"exact_match,{ours}"] == pytest.approx(np.mean(scores))
    assert spec["tasks"][task]["generation_kwargs"]["do_sample"] is True


@pytest.mark.model
def test_nq_open_exact_match_equals_lm_evals_any_gold_rule(qa_run):
    results, by_task, _ = qa_run
    config = lm_eval_yaml("nq_open/nq_open.yaml")
    (metric,) = config["metric_list"]
    options = {k: metric[k] for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore")}
    samples = sorted(by_task["nq_open"], key=lambda s: s["doc_id"])
    want = lm_eval_filtered(
        config["filter_list"][0]["filter"], [s["resps"][0] for s in samples], [s["doc"] for s in samples]
    )
    scores = []
    for s, prediction in zip(samples, want):
        assert s["filtered_resps"][0] == prediction and s["target"] == s["doc"]["answer"]
        # lm-eval's list-target rule for exact_match: 1 if the prediction matches any gold answer
        hits = [
            exact_match_hf_evaluate(predictions=[prediction], references=[g], **options)["exact_match"]
            for g in s["doc"]["answer"]
        ]
        scores.append(1.0 if any(hits) else 0.0)
        assert s["exact_match"] == scores[-1]
    assert results["nq_open"]["exact_match,remove_whitespace"] == pytest.approx(np.mean(scores))
