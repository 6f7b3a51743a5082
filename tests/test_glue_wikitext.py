"""GLUE and WikiText-2: the mirror against the raw files and published sizes, the tasks against
lm-eval's own YAMLs, the scores against sklearn/scipy and lm-eval's hf backend."""

from __future__ import annotations

import math
import re
from pathlib import Path

import lm_eval
import numpy as np
import pandas as pd
import pytest
import yaml
from clirun import harness
from helpers import lm_eval_instances, lm_eval_manager, task_instances

from harness.errors import DataUnavailableError
from harness.mirror import load_from_mirror
from harness.tasks import (
    build_task_manager,
    list_tasks,
    load_tasks,
    packaged_tasks_dir,
    resolve_tasks,
)

LM_EVAL_TASKS = Path(lm_eval.__file__).parent / "tasks"
GLUE_IN_MIRROR = ("sst2", "cola", "mrpc", "rte", "qnli", "wnli")  # lm-eval's GLUE tasks the mirror has

# Published GLUE dev sizes (GLUE paper / the hub's validation splits).
GLUE_DEV_SIZES = {"sst2": 872, "cola": 1043, "mrpc": 408, "rte": 277, "qnli": 5463, "stsb": 1500, "wnli": 71}

# Each TSV as the GLUE release lays it out, and the hub's label names in the hub's order
# (nyu-mll/glue dataset card): raw label -> label int.
RAW = {
    "sst2": ("SST-2", ["sentence"], "label", {"0": 0, "1": 1}),
    "cola": ("CoLA", [3], 1, {"0": 0, "1": 1}),
    "mrpc": ("MRPC", ["#1 String", "#2 String"], "Quality", {"0": 0, "1": 1}),
    "rte": ("RTE", ["sentence1", "sentence2"], "label", {"entailment": 0, "not_entailment": 1}),
    "qnli": ("QNLI", ["question", "sentence"], "label", {"entailment": 0, "not_entailment": 1}),
    "wnli": ("WNLI", ["sentence1", "sentence2"], "label", {"0": 0, "1": 1}),
    "stsb": ("STS-B", ["sentence1", "sentence2"], "score", None),
}


def test_glue_and_wikitext_task_files_are_lm_evals_unchanged():
    ours = packaged_tasks_dir()
    for family in ("glue", "wikitext"):
        files = [p for p in (LM_EVAL_TASKS / family).rglob("*") if p.suffix in (".yaml", ".py")]
        assert len(files) == {"glue": 10, "wikitext": 2}[family]
        for theirs in files:
            assert (ours / family / theirs.relative_to(LM_EVAL_TASKS / family)).read_bytes() == theirs.read_bytes()


# ------------------------------------------------------------------------------ GLUE mirror
def test_glue_mirror_counts_match_published_dev_sizes(shared_data):
    sizes = {
        name: load_from_mirror(shared_data, "nyu-mll/glue", name)["validation"].num_rows for name in GLUE_DEV_SIZES
    }
    assert sizes == GLUE_DEV_SIZES


@pytest.mark.parametrize("name", sorted(RAW))
def test_glue_mirror_rows_equal_the_tsv(shared_data, name):
    folder, text_cols, label_col, labels = RAW[name]
    headerless = name == "cola"
    raw = pd.read_csv(
        shared_data / "glue" / folder / "dev.tsv",
        sep="\t",
        quoting=3,
        dtype=str,
        keep_default_na=False,
        header=None if headerless else 0,
        encoding="utf-8-sig",
    )
    ds = load_from_mirror(shared_data, "nyu-mll/glue", name)["validation"]
    features = [f for f in ds.features if f not in ("label", "idx")]
    assert len(raw) == ds.num_rows
    for feature, col in zip(features, text_cols):
        assert ds[feature] == raw[col].tolist()
    gold = [float(np.float32(v)) for v in raw[label_col]] if labels is None else [labels[v] for v in raw[label_col]]
    assert ds["label"] == gold
    assert ds["idx"] == list(range(len(raw)))


def test_glue_requests_equal_lm_evals_own_yamls(shared_data):
    theirs = lm_eval_manager(LM_EVAL_TASKS / "glue", shared_data)
    for name in GLUE_IN_MIRROR:
        ours = task_instances(name, shared_data, limit=5)
        assert [r.args for r in ours] == [r.args for r in lm_eval_instances(theirs, name, 5)], name
    # lm-eval's `glue` tag, plus our STS-B
    assert build_task_manager().task_index["glue"].tags == {
        "sst2",
        "cola",
        "mrpc",
        "rte",
        "qnli",
        "wnli",
        "qqp",
        "mnli",
        "mnli_mismatch",
        "stsb",
    }


def test_glue_tasks_absent_from_the_mirror_say_so(shared_data):
    rows = {r.name: r.data for r in list_tasks(build_task_manager(data_dir=shared_data), shared_data)}
    assert {n: rows[n] for n in ("qqp", "mnli", "mnli_mismatch")} == dict.fromkeys(
        ("qqp", "mnli", "mnli_mismatch"), "missing from mirror"
    )
    assert all("glue/" in rows[n] for n in GLUE_IN_MIRROR + ("stsb",))
    with pytest.raises(DataUnavailableError, match=r"nyu-mll/glue/mnli .*glue/MNLI/dev_matched.tsv"):
        load_tasks(build_task_manager(data_dir=shared_data), ["mnli_mismatch"])


def test_the_glue_tag_runs_what_the_mirror_holds_and_names_what_it_skips(shared_data):
    tm = build_task_manager(data_dir=shared_data)
    selection = resolve_tasks(tm, ["glue"], shared_data)
    assert set(selection.names) == set(GLUE_IN_MIRROR) | {"stsb"}
    assert set(selection.skipped) == {"qqp", "mnli", "mnli_mismatch"}
    assert all("not in the mirror" in why for why in selection.skipped.values())
    # a task named outright is not skipped: it fails with the one-line error (next test)
    assert resolve_tasks(tm, ["qqp"], shared_data).names == ["qqp"]
    # no mirror: the hub decides, nothing is skipped
    assert set(resolve_tasks(build_task_manager(), ["glue"]).names) == tm.task_index["glue"].tags


@pytest.mark.parametrize("task,missing", [("qqp", "glue/QQP/dev.tsv"), ("mnli", "glue/MNLI/dev_matched.tsv")])
def test_running_a_glue_task_the_mirror_lacks_is_a_one_line_error(shared_data, tmp_path, task, missing):
    out = harness(
        "run",
        "--model",
        "smollm2-135m",
        "--tasks",
        task,
        "--data-dir",
        str(shared_data),
        "--limit",
        "2",
        "--output",
        str(tmp_path),
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and missing in out.stderr and "Traceback" not in out.stderr


def test_few_shot_from_the_absent_train_split_is_a_clear_error(shared_data):
    assert len(task_instances("rte", shared_data, num_fewshot=0, limit=2)) == 4  # zero-shot builds
    with pytest.raises(
        DataUnavailableError, match=r"task 'rte': 2-shot examples come from split 'train'.*validation only"
    ):
        task_instances("rte", shared_data, num_fewshot=2, limit=2)


def test_qqp_and_mnli_load_from_a_mirror_that_has_them(tmp_path):
    # a user's GLUE release with QQP and MNLI (rows in the GLUE TSV layout, written here)
    qqp, mnli = tmp_path / "glue/QQP", tmp_path / "glue/MNLI"
    qqp.mkdir(parents=True)
    mnli.mkdir(parents=True)
    (qqp / "dev.tsv").write_text(
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        "7\t15\t16\tHow do I learn Python?\tWhat is the best way to learn Python?\t1\n"
        "8\t17\t18\tWhy is the sky blue?\tHow tall is Everest?\t0\n",
        encoding="utf-8",
    )
    head = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
        "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
    )
    for split, genre in (("matched", "fiction"), ("mismatched", "letters")):
        (mnli / f"dev_{split}.tsv").write_text(
            head
            + f"0\t1\t1e\t{genre}\t(x)\t(y)\t(X)\t(Y)\tThe cat sat on the mat.\tA cat is sitting\tneutral\tneutral\n"
            f"1\t2\t2c\t{genre}\t(x)\t(y)\t(X)\t(Y)\tIt rained all day.\tThe day was dry.\tcontradiction\tcontradiction\n",
            encoding="utf-8",
        )
    assert load_from_mirror(tmp_path, "nyu-mll/glue", "qqp")["validation"][0] == {
        "question1": "How do I learn Python?",
        "question2": "What is the best way to learn Python?",
        "label": 1,
        "idx": 0,
    }
    assert load_from_mirror(tmp_path, "nyu-mll/glue", "mnli")["validation_mismatched"]["label"] == [1, 2]
    theirs = lm_eval_manager(LM_EVAL_TASKS / "glue", tmp_path)
    for name in ("qqp", "mnli", "mnli_mismatch"):
        ours = task_instances(name, tmp_path)
        assert [r.args for r in ours] == [r.args for r in lm_eval_instances(theirs, name, None)]
    assert task_instances("mnli", tmp_path)[0].args == (
        "The cat sat on the mat.\nQuestion: A cat is sitting. True, False or Neither?\nAnswer:",
        " True",
    )
    rows = {r.name: r.data for r in list_tasks(build_task_manager(data_dir=tmp_path), tmp_path)}
    assert "glue/QQP/dev.tsv" in rows["qqp"] and rows["sst2"] == "missing from mirror"


# ------------------------------------------------------------------------------ GLUE scores
@pytest.mark.model
def test_glue_loglikelihoods_match_lm_eval(harness_lm, reference_lm, shared_data):
    requests = [r for name in ("rte", "mrpc", "sst2") for r in task_instances(name, shared_data, limit=3)]
    for (ll, greedy), (ll_ref, greedy_ref) in zip(
        harness_lm.loglikelihood(requests), reference_lm.loglikelihood(requests), strict=True
    ):
        assert math.isclose(ll, ll_ref, rel_tol=1e-4, abs_tol=2e-3) and greedy == greedy_ref


@pytest.fixture(scope="module")
def glue_run(harness_lm, shared_data, tmp_path_factory):
    """One real run through the engine (as `harness run --limit 40`) of cola, mrpc, stsb and rte_scored.

    SmolLM2-135M answers "no" to every one of the first 40 CoLA and MRPC questions, so their mcc and
    f1 are 0 however they are computed; `rte_scored` (lm-eval's RTE YAML with mcc and f1 added, as a
    user's --include-path task) gives predictions of both classes to check the metrics on.
    """
    from harness.engine import run_evaluation
    from harness.spec import RunSpec

    cfg = yaml.safe_load((packaged_tasks_dir() / "glue/rte/default.yaml").read_text(encoding="utf-8"))
    cfg.pop("tag")
    cfg.update(task="rte_scored", metric_list=[{"metric": m} for m in ("acc", "mcc", "f1")])
    folder = tmp_path_factory.mktemp("user_tasks")
    (folder / "rte_scored.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    spec = RunSpec(
        model="smollm2-135m",
        tasks=("cola", "mrpc", "rte_scored", "stsb"),
        limit=40,
        batch_size=8,
        data_dir=str(shared_data),
        include_paths=(str(folder),),
        bootstrap_iters=0,
    )
    return run_evaluation(spec, loaded=harness_lm.loaded)


def _golds_and_choices(samples):
    golds = [s["doc"]["label"] for s in samples]
    lls = [[ll for ll, _ in s["filtered_resps"]] for s in samples]
    return golds, lls


@pytest.mark.model
def test_mcc_and_f1_equal_sklearn_on_the_runs_own_predictions(glue_run):
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    for task, metric, reference in (
        ("cola", "mcc", matthews_corrcoef),
        ("mrpc", "f1", f1_score),
        ("mrpc", "acc", accuracy_score),
        ("rte_scored", "mcc", matthews_corrcoef),
        ("rte_scored", "f1", f1_score),
        ("rte_scored", "acc", accuracy_score),
    ):
        golds, lls = _golds_and_choices(glue_run.samples[task])
        preds = [int(np.argmax(x)) for x in lls]
        assert len(golds) == 40 and set(golds) == {0, 1}
        assert glue_run.results["results"][task][f"{metric},none"] == pytest.approx(reference(golds, preds), abs=1e-12)
    golds, lls = _golds_and_choices(glue_run.samples["rte_scored"])
    preds = [int(np.argmax(x)) for x in lls]
    assert set(preds) == {0, 1} and matthews_corrcoef(golds, preds) != 0 and f1_score(golds, preds) > 0


@pytest.mark.model
def test_stsb_pearson_and_spearman_equal_scipy_on_the_runs_own_outputs(glue_run):
    from scipy.stats import pearsonr, spearmanr

    samples = glue_run.samples["stsb"]
    golds, lls = _golds_and_choices(samples)
    assert [a[1] for a in samples[0]["arguments"]] == [" 0", " 1", " 2", " 3", " 4", " 5"]
    # the expected score under the model's distribution over the six choices
    probs = [np.exp(np.array(x) - max(x)) / np.exp(np.array(x) - max(x)).sum() for x in lls]
    preds = [float(p @ np.arange(6)) for p in probs]
    results = glue_run.results["results"]["stsb"]
    assert results["pearson,none"] == pytest.approx(pearsonr(preds, golds).statistic, abs=1e-9)
    assert results["spearman,none"] == pytest.approx(spearmanr(preds, golds).statistic, abs=1e-9)


# ------------------------------------------------------------------------------ WikiText-2
def test_wikitext_mirror_has_the_hubs_62_test_pages(shared_data):
    pages = load_from_mirror(shared_data, "EleutherAI/wikitext_document_level", "wikitext-2-raw-v1")["test"]["page"]
    assert len(pages) == 62
    # one page per article: the official tokens file's top-level headings, in order
    tokens = (shared_data / "wikitext/wikitext-2/wiki.test.tokens").read_text(encoding="utf-8").split("\n")
    titles = [
        line for line in tokens if line.startswith(" = ") and line.endswith(" = ") and not line.startswith(" = = ")
    ]
    assert len(titles) == 62
    for page, title in zip(pages, titles):  # the tokens file has <unk> for rare words
        assert re.fullmatch(re.escape(title).replace("<unk>", r"\S+"), page.split("\n")[0]), (title, page[:80])
    raw_text = (shared_data / "wikitext/wikitext-2-raw-reconstructed/wiki.test.raw").read_text(encoding="utf-8")
    assert "\n".join(pages) == raw_text.removeprefix(" \n")  # nothing lost but the blank line before page 1


def test_wikitext_requests_equal_lm_evals_own_yaml(shared_data):
    ours = task_instances("wikitext", shared_data, limit=4)
    theirs = lm_eval_instances(lm_eval_manager(LM_EVAL_TASKS / "wikitext", shared_data), "wikitext", 4)
    assert [r.args for r in ours] == [r.args for r in theirs]


@pytest.mark.model
def test_wikitext_perplexity_within_a_tenth_of_a_percent_of_lm_eval(harness_lm, reference_lm, shared_data):
    from lm_eval.models.huggingface import HFLM

    from harness.models.hf import HarnessLM

    # a short max length (the same on both sides) makes several rolling windows per page
    max_length, limit = 1024, 2
    ours = lm_eval.simple_evaluate(
        model=HarnessLM(loaded=harness_lm.loaded, batch_size=4, max_length=max_length),
        tasks=["wikitext"],
        task_manager=build_task_manager(data_dir=shared_data),
        limit=limit,
        bootstrap_iters=0,
    )
    ref_lm = HFLM(
        pretrained=reference_lm.model,
        tokenizer=reference_lm.tokenizer,
        device="cpu",
        batch_size=1,
        max_length=max_length,
    )
    ref = lm_eval.simple_evaluate(
        model=ref_lm,
        tasks=["wikitext"],
        task_manager=lm_eval_manager(LM_EVAL_TASKS / "wikitext", shared_data),
        limit=limit,
        bootstrap_iters=0,
    )
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        o, r = ours["results"]["wikitext"][f"{metric},none"], ref["results"]["wikitext"][f"{metric},none"]
        assert abs(o - r) / r < 1e-3, (metric, o, r)
    assert ours["results"]["wikitext"]["word_perplexity,none"] > 1
