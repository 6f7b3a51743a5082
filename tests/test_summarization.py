"""SAMSum and DialogSum: mirror rows against the raw files; scores of real runs against rouge-score and sacrebleu."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import sacrebleu
from clirun import harness
from rouge_score import rouge_scorer

from harness.mirror import load_from_mirror, mirror_source
from harness.store import RunStore
from harness.tasks import build_task_manager

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
LIMIT = 3


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def eval_docs(name: str, data_dir: Path) -> list[dict]:
    task = build_task_manager(data_dir=data_dir).load([name])["tasks"][name]
    return list(task.eval_docs)


# ------------------------------------------------------------------------------ mirror


def test_samsum_mirror_has_the_published_counts_and_the_raw_rows(shared_data):
    ds = load_from_mirror(shared_data, "knkarthick/samsum", None)
    # published (Gliwa et al., 2019): test 819, validation 818
    assert (ds["test"].num_rows, ds["validation"].num_rows) == (819, 818)
    assert list(ds["test"].features) == ["id", "dialogue", "summary"]  # the hub's schema
    for split, filename in (("test", "test.jsonl"), ("validation", "validation.jsonl")):
        raw = read_jsonl(shared_data / "samsum" / filename)
        assert ds[split]["dialogue"] == [r["context"] for r in raw]  # byte for byte, \r\n kept
        assert ds[split]["summary"] == [r["response"] for r in raw]
    assert ds["test"]["id"] == [r["id"] for r in read_jsonl(shared_data / "samsum/test.with_ids.jsonl")]
    assert "samsum" in mirror_source(shared_data, "knkarthick/samsum", None)


def test_dialogsum_mirror_has_the_hub_shape_and_the_raw_rows(shared_data):
    ds = load_from_mirror(shared_data, "knkarthick/dialogsum", None)
    raw_test = read_jsonl(shared_data / "dialogsum/dialogsum.test.jsonl")
    raw_dev = read_jsonl(shared_data / "dialogsum/dialogsum.dev.jsonl")
    # published (Chen et al., 2021): test 500 dialogues x 3 references, dev 500; the hub has a row per reference
    assert (len(raw_test), ds["test"].num_rows, ds["validation"].num_rows) == (500, 1500, 500)
    assert list(ds["test"].features) == ["id", "dialogue", "summary", "topic"]
    test = ds["test"].to_list()
    for n, r in enumerate(raw_test):
        rows = test[3 * n : 3 * n + 3]
        assert [x["dialogue"] for x in rows] == [r["dialogue"]] * 3
        assert [x["summary"] for x in rows] == [r["summary1"], r["summary2"], r["summary3"]]
        assert [x["topic"] for x in rows] == [r["topic1"], r["topic2"], r["topic3"]]
    assert ds["validation"]["summary"] == [r["summary"] for r in raw_dev]
    assert ds["validation"]["dialogue"] == [r["dialogue"] for r in raw_dev]


def test_dialogsum_task_has_one_doc_per_dialogue_with_all_three_references(shared_data):
    docs = eval_docs("dialogsum", shared_data)
    raw = read_jsonl(shared_data / "dialogsum/dialogsum.test.jsonl")
    assert len(docs) == 500
    assert [d["summaries"] for d in docs] == [[r["summary1"], r["summary2"], r["summary3"]] for r in raw]
    assert [d["dialogue"] for d in docs] == [r["dialogue"] for r in raw]
    assert [d["id"] for d in docs] == [r["fname"] for r in raw]


def test_dialogsum_grouping_does_not_depend_on_row_order_or_ids(shared_data):
    task = build_task_manager(data_dir=shared_data).load(["dialogsum"])["tasks"]["dialogsum"]
    rows = load_from_mirror(shared_data, "knkarthick/dialogsum", None)["test"].to_list()
    # a hub copy could list all first references, then all second ones, ... under other ids
    reordered = [dict(r, id=f"row{n}") for k in range(3) for n, r in enumerate(rows[k::3])]
    docs = task.config.process_docs(datasets.Dataset.from_list(reordered)).to_list()
    raw = read_jsonl(shared_data / "dialogsum/dialogsum.test.jsonl")
    assert [d["summaries"] for d in docs] == [[r["summary1"], r["summary2"], r["summary3"]] for r in raw]


def test_samsum_task_docs_are_the_test_split_with_plain_line_breaks(shared_data):
    docs = eval_docs("samsum", shared_data)
    raw = read_jsonl(shared_data / "samsum/test.jsonl")
    assert len(docs) == 819
    assert [d["dialogue"] for d in docs] == [r["context"].replace("\r\n", "\n") for r in raw]
    assert [d["summary"] for d in docs] == [r["response"] for r in raw]  # references untouched


# ------------------------------------------------------------------------------ real runs


def harness_run(out: Path, *args: str) -> tuple[dict, list[dict]]:
    """`harness run` as a user types it; the stored results.json and samples."""
    done = harness("run", "--model", "smollm2-135m", "--output", str(out), *args)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = RunStore(out).runs()
    samples = [json.loads(line) for line in gzip.open(run / "samples.jsonl.gz", "rt", encoding="utf-8")]
    return json.loads((run / "results.json").read_text()), samples


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, shared_data, smollm2_weights):
    return harness_run(
        tmp_path_factory.mktemp("runs"),
        "--tasks",
        "samsum,dialogsum",
        "--data-dir",
        str(shared_data),
        "--limit",
        str(LIMIT),
    )


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory, shared_data, smollm2_weights):
    # --num-fewshot over both a zero-shot default and a YAML's 3; shorter generations than the YAML's
    # 128 tokens: this run is about the prompt, and CPU time is dear
    return harness_run(
        tmp_path_factory.mktemp("runs"),
        "--tasks",
        "samsum,dialogsum_fewshot",
        "--data-dir",
        str(shared_data),
        "--limit",
        "2",
        "--num-fewshot",
        "1",
        "--apply-chat-template",
        "--gen-kwargs",
        "max_new_tokens=48",
    )


def references(sample: dict) -> list[str]:
    target = sample["target"]
    return target if isinstance(target, list) else [target]


def check_scores_against_the_references(results: dict, samples: list[dict], task: str, n_refs: int, docs: int):
    mine = [s for s in samples if s["task"] == task]
    assert len(mine) == docs
    preds = [s["filtered_resps"][0] for s in mine]
    refs = [references(s) for s in mine]
    assert all(len(r) == n_refs for r in refs)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True, split_summaries=False)
    scores = task_scores(results, task)
    for rouge in ROUGE_TYPES:
        # rouge-score directly: F-measure, best reference by F-measure (score_multi)
        expected = [scorer.score_multi(r, p)[rouge].fmeasure for r, p in zip(refs, preds)]
        assert [s[rouge] for s in mine] == pytest.approx(expected, abs=1e-12)
        assert scores[rouge] == pytest.approx(np.mean(expected), abs=1e-12)
    # one reference stream per annotator, as sacrebleu takes them
    streams = [[r[k] for r in refs] for k in range(n_refs)]
    assert scores["corpus_bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, streams).score, abs=1e-9)
    return preds, scores


def task_scores(results: dict, task: str) -> dict[str, float]:
    return {k.split(",")[0]: v for k, v in results["results"][task].items() if k.endswith(",none")}


@pytest.mark.model
def test_samsum_run_scores_equal_rouge_score_and_sacrebleu(plain_run):
    results, samples = plain_run
    assert results["n-shot"] == {"samsum": 0, "dialogsum": 0}
    preds, scores = check_scores_against_the_references(results, samples, "samsum", n_refs=1, docs=LIMIT)
    assert any(p.strip() for p in preds)  # the model did write summaries
    assert all("\n\n" not in p for p in preds)  # stop sequence
    print("samsum", {k: round(v, 4) for k, v in scores.items()})


@pytest.mark.model
def test_dialogsum_run_is_scored_against_all_three_references(plain_run):
    results, samples = plain_run
    preds, scores = check_scores_against_the_references(results, samples, "dialogsum", n_refs=3, docs=LIMIT)
    assert any(p.strip() for p in preds)
    print("dialogsum", {k: round(v, 4) for k, v in scores.items()})


@pytest.mark.model
def test_chat_template_runs_with_the_instruction_as_system_message(chat_run, shared_data):
    results, samples = chat_run
    assert results["n-shot"] == {"samsum": 1, "dialogsum_fewshot": 1}
    for s in samples:
        assert s["prompt"].startswith("<|im_start|>system\nSummarize the following dialogue")
        assert s["prompt"].endswith("<|im_start|>assistant\n")
        # the one shot is a user turn and an assistant turn holding the first validation summary
        assert s["prompt"].count("<|im_start|>user") == s["prompt"].count("<|im_start|>assistant") == 2
    first_summary = {
        "samsum": read_jsonl(shared_data / "samsum/validation.jsonl")[0]["response"],
        "dialogsum_fewshot": read_jsonl(shared_data / "dialogsum/dialogsum.dev.jsonl")[0]["summary"],
    }
    for task, n_refs in (("samsum", 1), ("dialogsum_fewshot", 3)):
        assert all(first_summary[task].strip() in s["prompt"] for s in samples if s["task"] == task)
        _, scores = check_scores_against_the_references(results, samples, task, n_refs=n_refs, docs=2)
        print(task, "chat", {k: round(v, 4) for k, v in scores.items()})
