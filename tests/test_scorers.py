"""Scorers against their references (rouge-score, sacrebleu, the official SQuAD v1.1 script, sklearn,
scipy, lm-eval's stderr functions, the ECE formula), and a real run's stderr, intervals and signatures."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import math
import random
import re
import time
from pathlib import Path

import lm_eval
import lm_eval.api.metrics as lm_metrics
import numpy as np
import pytest
import sacrebleu
import scipy.stats
import sklearn.metrics
from helpers import perturb, read_jsonl, squad_official
from lm_eval.api.registry import aggregation_registry, get_metric, get_metric_aggregation, metric_registry
from rouge_score import rouge_scorer

import harness.scorers  # noqa: F401  registers the metric names
from harness.scorers import registry
from harness.scorers.bootstrap import Z95, bootstrap_resampled, bootstrap_statistic, mean_estimate
from harness.scorers.calibration import choice_confidence, ece_from_sums, ece_rows, expected_calibration_error
from harness.scorers.classification import confusion_rows, f1_from_counts, f1_rows, mcc_from_confusion
from harness.scorers.correlation import pearson_from_sums, pearson_rows, spearman_resampled
from harness.scorers.statistics import estimate_score

OUR_METRICS = (
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "corpus_bleu",
    "corpus_chrf",
    "squad_exact_match",
    "squad_f1",
    "pearson",
    "spearman",
)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
SEED = 1234
FIXTURE_TASKS = Path(__file__).parent / "fixtures" / "scorer_tasks"

official = squad_official()


@pytest.fixture(scope="module")
def samsum_refs(shared_data) -> list[str]:
    return [r["response"] for r in read_jsonl(shared_data / "samsum" / "test.jsonl")]


@pytest.fixture(scope="module")
def dialogsum_refs(shared_data) -> list[list[str]]:
    rows = read_jsonl(shared_data / "dialogsum" / "dialogsum.test.jsonl")
    return [[r[f"summary{k}"] for k in (1, 2, 3)] for r in rows]


# ------------------------------------------------------------------------------ registry


def test_our_metric_names_are_registered_with_lm_eval_and_do_not_shadow_its_own():
    for name in OUR_METRICS:
        assert get_metric(name).__module__ == "harness.scorers.registry", name
        assert get_metric_aggregation(name) is not None
    # lm-eval's own names still resolve to lm-eval's functions
    for name in ("acc", "acc_norm", "exact_match", "f1", "mcc", "bleu", "chrf", "word_perplexity", "bits_per_byte"):
        assert get_metric(name).__module__ == "lm_eval.api.metrics", name
    for name in ("corpus_bleu", "corpus_chrf", "pearson", "spearman"):
        assert aggregation_registry.get(name).__module__ == "harness.scorers.registry"
    # none of our names is one lm-eval defines anywhere (its metric module or its task utils)
    lm_eval_root = Path(lm_eval.__file__).parent
    registered = set()
    for path in lm_eval_root.rglob("*.py"):
        registered |= set(
            re.findall(
                r"register_(?:metric|aggregation)\(\s*(?:metric=)?[\"']([^\"']+)[\"']",
                path.read_text(encoding="utf-8", errors="ignore"),
            )
        )
    assert registered and not registered & set(OUR_METRICS)
    assert len(metric_registry) > len(OUR_METRICS)


# ------------------------------------------------------------------------------ ROUGE


def test_rouge_equals_rouge_score_on_samsum_references(samsum_refs):
    rng = random.Random(0)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)  # rouge-score's own defaults otherwise
    refs = samsum_refs[:150]
    preds = [perturb(r, rng) for r in refs[:100]] + refs[100:][::-1]  # near misses and unrelated summaries
    assert any("\n" in p for p in preds)
    for ref, pred in zip(refs, preds):
        expected = scorer.score(ref, pred)
        for t in ROUGE_TYPES:
            assert get_metric(t)(references=[ref], predictions=[pred]) == expected[t].fmeasure


def test_rouge_takes_the_best_of_several_references(dialogsum_refs):
    rng = random.Random(1)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    for refs in dialogsum_refs[:60]:
        pred = perturb(refs[rng.randrange(3)], rng)
        for t in ROUGE_TYPES:
            best = max(scorer.score(r, pred)[t].fmeasure for r in refs)
            assert get_metric(t)(references=[refs], predictions=[pred]) == best


# ------------------------------------------------------------------------------ BLEU, chrF


def test_corpus_bleu_and_chrf_equal_sacrebleu_single_and_three_references(samsum_refs, dialogsum_refs):
    rng = random.Random(2)
    refs1 = samsum_refs[:200]
    preds1 = [perturb(r, rng) for r in refs1]
    items1 = [get_metric("corpus_bleu")(references=[r], predictions=[p]) for r, p in zip(refs1, preds1)]
    assert get_metric_aggregation("corpus_bleu")(items1) == sacrebleu.corpus_bleu(preds1, [refs1]).score
    assert get_metric_aggregation("corpus_chrf")(items1) == sacrebleu.corpus_chrf(preds1, [refs1]).score

    refs3 = dialogsum_refs[:150]
    preds3 = [perturb(r[0], rng) for r in refs3]
    streams = [[r[k] for r in refs3] for k in range(3)]
    items3 = [get_metric("corpus_chrf")(references=[r], predictions=[p]) for r, p in zip(refs3, preds3)]
    assert get_metric_aggregation("corpus_bleu")(items3) == sacrebleu.corpus_bleu(preds3, streams).score
    assert get_metric_aggregation("corpus_chrf")(items3) == sacrebleu.corpus_chrf(preds3, streams).score

    # the per-segment statistics the bootstrap resamples give the same corpus score when summed
    _, options, _ = estimate_score("corpus_bleu", registry.corpus_bleu_aggregation, items3, {}, seed=SEED, resamples=0)
    assert options["nrefs"] == "3" and options["tok"] == "13a"
    # lm-eval's own `bleu` aggregation calls sacrebleu with its defaults (13a), not tokenize="intl"
    lm_items = [[r, p] for r, p in zip(refs1, preds1)]
    assert lm_metrics.bleu(lm_items) == sacrebleu.corpus_bleu(preds1, [refs1]).score


# ------------------------------------------------------------------------------ SQuAD


def test_squad_em_and_f1_equal_the_official_v11_script_on_the_dev_set(shared_data):
    data = json.loads((shared_data / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))["data"]
    qas = [qa for article in data for para in article["paragraphs"] for qa in para["qas"]]
    assert len(qas) == 10570  # published dev size
    rng = random.Random(3)
    em, f1 = get_metric("squad_exact_match"), get_metric("squad_f1")
    checked = nonzero_f1 = partial = 0
    for n, qa in enumerate(qas[::3]):  # a third of the dev set keeps the test to seconds
        golds = [a["text"] for a in qa["answers"]]
        other = qas[(n * 7919) % len(qas)]["answers"][0]["text"]
        g = golds[rng.randrange(len(golds))]
        words = g.split()
        candidates = [
            g,
            "The " + g + ".",
            g.upper(),
            f"  {g}\n",
            other,
            "",
            " ".join(words[:-1]) if len(words) > 1 else g + " " + other,
            "an " + g + " in " + other.lower(),
            g.replace(" ", ", "),
        ]
        for pred in candidates:
            want_em = official.metric_max_over_ground_truths(official.exact_match_score, pred, golds)
            want_f1 = official.metric_max_over_ground_truths(official.f1_score, pred, golds)
            assert em(references=[golds], predictions=[pred]) == float(want_em), (golds, pred)
            assert f1(references=[golds], predictions=[pred]) == want_f1, (golds, pred)
            checked += 1
            nonzero_f1 += want_f1 > 0
            partial += 0 < want_f1 < 1
    assert checked == 9 * 3524 and nonzero_f1 > 15000 and partial > 3000  # the comparison covered real cases


# ------------------------------------------------------------------------------ classification, correlation


def cola_labels(shared_data) -> list[int]:
    with open(shared_data / "glue" / "CoLA" / "dev.tsv", encoding="utf-8") as f:
        return [int(row[1]) for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def noisy_predictions(golds, flip: float, seed: int, classes=(0, 1)) -> list:
    rng = random.Random(seed)
    return [rng.choice(classes) if rng.random() < flip else g for g in golds]


def test_mcc_and_f1_equal_sklearn_on_cola_labels(shared_data):
    golds = cola_labels(shared_data)
    assert len(golds) == 1043
    for flip in (0.0, 0.3, 0.8):
        preds = noisy_predictions(golds, flip, seed=4)
        rows, k = confusion_rows(golds, preds)
        assert mcc_from_confusion(rows.sum(axis=0), k)[0] == pytest.approx(
            sklearn.metrics.matthews_corrcoef(golds, preds), abs=1e-12
        )
        assert f1_from_counts(f1_rows(golds, preds).sum(axis=0))[0] == pytest.approx(
            sklearn.metrics.f1_score(golds, preds), abs=1e-12
        )
    # three classes, and the degenerate all-one-class prediction (sklearn: 0)
    g3 = [g + (i % 3 == 0) for i, g in enumerate(golds)]
    p3 = noisy_predictions(g3, 0.4, seed=5, classes=(0, 1, 2))
    rows, k = confusion_rows(g3, p3)
    assert mcc_from_confusion(rows.sum(axis=0), k)[0] == pytest.approx(
        sklearn.metrics.matthews_corrcoef(g3, p3), abs=1e-12
    )
    ones = [1] * len(golds)
    rows, k = confusion_rows(golds, ones)
    assert mcc_from_confusion(rows.sum(axis=0), k)[0] == sklearn.metrics.matthews_corrcoef(golds, ones) == 0.0


def stsb_scores(shared_data) -> list[float]:
    with open(shared_data / "glue" / "STS-B" / "dev.tsv", encoding="utf-8") as f:
        return [float(row["score"]) for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def test_pearson_and_spearman_equal_scipy_on_stsb_scores(shared_data):
    golds = stsb_scores(shared_data)
    assert len(golds) == 1500
    rng = np.random.default_rng(6)
    preds = np.clip(np.round(np.asarray(golds) + rng.normal(0, 1.2, len(golds))), 0, 5)  # ties, like choice scores
    items = [get_metric("pearson")(references=[g], predictions=[p]) for g, p in zip(golds, preds)]
    assert get_metric_aggregation("pearson")(items) == scipy.stats.pearsonr(preds, golds).statistic
    assert get_metric_aggregation("spearman")(items) == scipy.stats.spearmanr(preds, golds).statistic
    # the forms the bootstrap uses agree with scipy at full sample
    assert pearson_from_sums(pearson_rows(preds, golds).sum(axis=0))[0] == pytest.approx(
        scipy.stats.pearsonr(preds, golds).statistic, abs=1e-12
    )
    identity = np.arange(len(golds))[None, :]
    assert spearman_resampled(preds, golds, identity)[0] == pytest.approx(
        scipy.stats.spearmanr(preds, golds).statistic, abs=1e-12
    )
    # a resample is ranked on its own: equal to scipy on the resampled values
    idx = np.random.default_rng(7).integers(0, len(golds), size=(3, len(golds)))
    for row, rho in zip(idx, spearman_resampled(preds, golds, idx)):
        assert rho == pytest.approx(scipy.stats.spearmanr(preds[row], np.asarray(golds)[row]).statistic, abs=1e-12)


# ------------------------------------------------------------------------------ stderr and intervals


def test_closed_form_stderr_equals_lm_eval_mean_stderr():
    rng = np.random.default_rng(8)
    for values in (rng.integers(0, 2, 500).astype(float), rng.random(77)):
        est = mean_estimate(values)
        assert est.stderr == pytest.approx(lm_metrics.mean_stderr(list(values)), rel=1e-12)
        assert Z95 == pytest.approx(scipy.stats.norm.ppf(0.975), abs=1e-15)
        assert est.ci95 == pytest.approx((values.mean() - Z95 * est.stderr, values.mean() + Z95 * est.stderr))
    assert mean_estimate([1.0]).stderr is None  # lm-eval reports N/A for one sample
    # small samples: the normal interval is clipped to what a mean of the values can be
    est = mean_estimate([1.0, 1.0, 0.0, 1.0])
    assert est.stderr == pytest.approx(0.25) and est.ci95 == pytest.approx((0.75 - Z95 * 0.25, 1.0))


def test_bootstrap_stderr_agrees_with_lm_eval_and_is_seeded(shared_data, samsum_refs, monkeypatch):
    monkeypatch.setenv("DISABLE_MULTIPROC", "1")  # lm-eval's single-process loop: no worker pool in tests
    # MCC on 400 CoLA labels; lm-eval 500 loop resamples, ours 4,000 vectorised
    golds = cola_labels(shared_data)[:400]
    items = list(zip(golds, noisy_predictions(golds, 0.5, seed=9)))
    theirs = lm_metrics.bootstrap_stderr(lm_metrics.matthews_corrcoef, items, iters=500)
    ours, _, _ = estimate_score("mcc", lm_metrics.matthews_corrcoef, items, {}, seed=SEED, resamples=4000)
    # Monte Carlo error of a bootstrap stderr is ~1/sqrt(2B): ~3.4% for these two; 15% is > 4 sigma
    assert ours.stderr == pytest.approx(theirs, rel=0.15)
    lo, hi = ours.ci95
    assert lo < lm_metrics.matthews_corrcoef(items) < hi

    # corpus BLEU (lm-eval's `bleu` aggregation) on 80 SAMSum references; lm-eval's own 100 resamples
    rng = random.Random(10)
    bleu_items = [[r, perturb(r, rng)] for r in samsum_refs[:80]]
    theirs = lm_metrics.bootstrap_stderr(lm_metrics.bleu, bleu_items, iters=100)
    ours, _, _ = estimate_score("bleu", lm_metrics.bleu, bleu_items, {}, seed=SEED, resamples=4000)
    assert ours.stderr == pytest.approx(theirs, rel=0.3)  # ~7% MC error at B=100: 30% is > 4 sigma

    # word perplexity: lm-eval reports no stderr; its bootstrap_stderr on its own aggregation is the reference
    ppl_rng = np.random.default_rng(11)
    words = ppl_rng.integers(50, 400, 200)
    ppl_items = [(float(-w * ppl_rng.uniform(2.5, 4.5)), int(w)) for w in words]
    theirs = lm_metrics.bootstrap_stderr(lm_metrics.weighted_perplexity, ppl_items, iters=1000)
    ours, _, _ = estimate_score(
        "word_perplexity", lm_metrics.weighted_perplexity, ppl_items, {}, seed=SEED, resamples=4000
    )
    assert ours.stderr == pytest.approx(theirs, rel=0.12)

    # seeded: the same seed gives the same numbers, another seed others
    again, _, _ = estimate_score(
        "word_perplexity", lm_metrics.weighted_perplexity, ppl_items, {}, seed=SEED, resamples=4000
    )
    other, _, _ = estimate_score(
        "word_perplexity", lm_metrics.weighted_perplexity, ppl_items, {}, seed=SEED + 1, resamples=4000
    )
    assert again == ours and other.stderr != ours.stderr


def test_vectorised_bootstrap_equals_the_same_resamples_scored_one_by_one():
    """The summed-statistics path is a faster way to the same replicates, not a different estimator."""
    rng = np.random.default_rng(12)
    golds = rng.integers(0, 2, 300).tolist()
    preds = [g if rng.random() < 0.7 else 1 - g for g in golds]
    rows, k = confusion_rows(golds, preds)
    fast = bootstrap_statistic(rows, lambda s: mcc_from_confusion(s, k), 500, SEED)
    g, p = np.asarray(golds), np.asarray(preds)
    slow = bootstrap_resampled(
        len(golds), lambda idx: np.array([sklearn.metrics.matthews_corrcoef(g[row], p[row]) for row in idx]), 500, SEED
    )
    assert fast.stderr == pytest.approx(slow.stderr, rel=1e-9) and fast.ci95 == pytest.approx(slow.ci95, rel=1e-9)


def test_resampling_agrees_with_an_independent_numpy_resampler():
    """The check above shares our resample indices on both sides; here the other side draws its own
    (another generator, another seed), so a resampler that drew the wrong indices would show."""
    rng = np.random.default_rng(13)
    golds = rng.integers(0, 2, 300).tolist()
    preds = [g if rng.random() < 0.7 else 1 - g for g in golds]
    rows, k = confusion_rows(golds, preds)
    resamples = 2000
    ours = bootstrap_statistic(rows, lambda s: mcc_from_confusion(s, k), resamples, SEED)
    g, p = np.asarray(golds), np.asarray(preds)
    idx = np.random.Generator(np.random.PCG64(2026)).integers(0, len(golds), size=(resamples, len(golds)))
    theirs = np.array([sklearn.metrics.matthews_corrcoef(g[row], p[row]) for row in idx])
    sd = theirs.std(ddof=1)
    # two independent bootstrap sds of B resamples each differ by ~1/sqrt(B) relative: allow 5 of those
    assert ours.stderr == pytest.approx(sd, rel=5 / np.sqrt(resamples))
    # a 2.5 % quantile of B draws has a Monte Carlo sd of ~0.06 sd (normal replicates): 0.45 sd is > 5 of two
    lo, hi = np.percentile(theirs, [2.5, 97.5])
    assert abs(ours.ci95[0] - lo) < 0.45 * sd and abs(ours.ci95[1] - hi) < 0.45 * sd


def test_bleu_bootstrap_equals_sacrebleu_rescoring_each_resample(samsum_refs):
    rng = random.Random(14)
    refs = samsum_refs[200:260]
    preds = [perturb(r, rng) for r in refs]
    items = [[r, p] for r, p in zip(refs, preds)]
    fast, _, _ = estimate_score("corpus_bleu", registry.corpus_bleu_aggregation, items, {}, seed=SEED, resamples=100)
    slow = bootstrap_resampled(
        len(items),
        lambda idx: np.array(
            [sacrebleu.corpus_bleu([preds[i] for i in row], [[refs[i] for i in row]]).score for row in idx]
        ),
        100,
        SEED,
    )
    assert fast.stderr == pytest.approx(slow.stderr, rel=1e-9) and fast.ci95 == pytest.approx(slow.ci95, rel=1e-9)


# ------------------------------------------------------------------------------ calibration


def ece_by_definition(confidences, correct, bins=10) -> float:
    """Guo et al. (2017): Σ_m |B_m|/n · |acc(B_m) - conf(B_m)|, B_m = ((m-1)/M, m/M]."""
    n, total = len(confidences), 0.0
    for m in range(1, bins + 1):
        members = [i for i, c in enumerate(confidences) if (m - 1) / bins < c <= m / bins]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidences[i] for i in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total


def test_ece_equals_the_definition():
    conf = [0.95, 0.95, 0.85, 0.62, 0.55, 0.35]
    correct = [1, 0, 1, 1, 0, 0]
    # by hand: (2·|0.5-0.95| + |1-0.85| + |1-0.62| + |0-0.55| + |0-0.35|) / 6
    assert expected_calibration_error(conf, correct) == pytest.approx(2.33 / 6, abs=1e-12)
    rng = np.random.default_rng(13)
    for _ in range(20):
        c = rng.uniform(0.25, 1.0, 200)
        y = (rng.random(200) < c**1.5).astype(float)
        assert expected_calibration_error(c, y) == pytest.approx(ece_by_definition(list(c), list(y)), abs=1e-12)
    # confidence of a multiple-choice doc: the softmax probability of its most likely choice
    lls = [-4.2, -1.3, -2.8, -7.0]
    assert choice_confidence(lls) == pytest.approx(math.exp(-1.3) / sum(math.exp(x) for x in lls), abs=1e-15)
    rows = ece_rows(c, y)
    est = bootstrap_statistic(rows, ece_from_sums, 1000, SEED)
    assert est.ci95[0] < expected_calibration_error(c, y) < est.ci95[1] and est.stderr > 0


# ------------------------------------------------------------------------------ a real run


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, shared_data, smollm2_weights):
    from harness.engine import run_evaluation
    from harness.spec import RunSpec
    from harness.store import RunStore, read_json, read_samples

    # demo (acc, exact_match, perplexities), our generation metrics on short prompts, CoLA (mcc), STS-B (correlations)
    spec = RunSpec(
        model="smollm2-135m",
        tasks=("demo", "scorers_capitals_gen", "cola", "stsb"),
        limit=6,
        batch_size=4,
        data_dir=str(shared_data),
        include_paths=(str(FIXTURE_TASKS),),
        device="cpu",
        dtype="float32",
    )
    started = time.time()
    run_dir = RunStore(tmp_path_factory.mktemp("runs")).save(run_evaluation(spec))
    print(f"scored run: {time.time() - started:.1f}s")
    return read_json(run_dir, "results.json"), read_samples(run_dir)


@pytest.mark.model
def test_every_score_of_a_real_run_has_stderr_interval_and_signature(scored_run):
    results, samples = scored_run
    seen = set()
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            seen.add(metric)
            stderr = metrics[f"{metric}_stderr,{filt}"]
            assert isinstance(stderr, float) and stderr >= 0, (task, key, stderr)
            lo, hi = results["ci95"][task][key]
            assert lo <= value <= hi or stderr == 0, (task, key)
            sig = results["signatures"][task][key]
            assert sig.startswith(metric + "|") and re.search(r"\|[a-z_]+:\d+\.\d+", sig), sig
            if "ci:bootstrap" in sig:
                assert "|bs:1000|seed:1234|" in sig
    assert {
        "acc",
        "acc_norm",
        "ece",
        "exact_match",
        "word_perplexity",
        "byte_perplexity",
        "bits_per_byte",
        "rouge1",
        "rougeL",
        "corpus_bleu",
        "corpus_chrf",
        "squad_exact_match",
        "squad_f1",
        "mcc",
        "pearson",
        "spearman",
    } <= seen
    sigs = results["signatures"]
    assert sigs["scorers_capitals_gen"]["corpus_bleu,none"] == (
        "corpus_bleu|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|ci:bootstrap|bs:1000|seed:1234|sacrebleu:"
        + sacrebleu.__version__
    )
    assert sigs["scorers_capitals_gen"]["rougeL,none"] == (
        "rougeL|score:f|stem:yes|multiref:max|ci:normal|rouge_score:" + importlib.metadata.version("rouge-score")
    )
    assert sigs["demo_arithmetic"]["exact_match,first_number"].startswith(
        'exact_match|ignore_case:yes|ignore_punctuation:yes|regexes_to_ignore:[" "]|ci:normal|lm_eval:'
    )
    assert results["config"]["bootstrap_iters"] == 1000

    # acc's stderr is lm-eval's closed form over the samples; sentence BLEU is sacrebleu's on each sample
    caps = [s for s in samples if s["task"] == "demo_capitals"]
    assert results["results"]["demo_capitals"]["acc_stderr,none"] == pytest.approx(
        lm_metrics.mean_stderr([s["acc"] for s in caps]), rel=1e-12
    )


@pytest.mark.model
def test_generation_metrics_of_a_real_run_equal_their_references_on_its_outputs(scored_run):
    results, samples = scored_run
    rows = [s for s in samples if s["task"] == "scorers_capitals_gen"]
    assert len(rows) == 6
    preds, golds = [s["filtered_resps"][0] for s in rows], [s["target"] for s in rows]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    for s, pred, gold in zip(rows, preds, golds):
        assert s["rouge1"] == scorer.score(gold, pred)["rouge1"].fmeasure
        assert s["squad_f1"] == official.f1_score(pred, gold)
        assert s["squad_exact_match"] == float(official.exact_match_score(pred, gold))
        assert s["sentence_bleu"] == sacrebleu.sentence_bleu(pred, [gold]).score  # for browsing
    scores = results["results"]["scorers_capitals_gen"]
    assert scores["corpus_bleu,none"] == sacrebleu.corpus_bleu(preds, [golds]).score
    assert scores["corpus_chrf,none"] == sacrebleu.corpus_chrf(preds, [golds]).score
    assert scores["squad_f1,none"] == pytest.approx(np.mean([official.f1_score(p, g) for p, g in zip(preds, golds)]))


@pytest.mark.model
def test_ece_of_a_real_run_equals_the_definition_on_its_samples(scored_run):
    results, samples = scored_run
    for task in ("demo_capitals", "cola"):
        rows = [s for s in samples if s["task"] == task]
        conf = [
            max(math.exp(r[0]) for r in s["filtered_resps"]) / sum(math.exp(r[0]) for r in s["filtered_resps"])
            for s in rows
        ]
        if task == "cola":  # mcc-only task: correct when lm-eval's argmax prediction is the gold label
            correct = [float(s["mcc"][0] == s["mcc"][1]) for s in rows]
        else:
            correct = [float(s["acc"]) for s in rows]
        assert results["results"][task]["ece,none"] == pytest.approx(ece_by_definition(conf, correct), abs=1e-12)
        assert results["higher_is_better"][task]["ece"] is False
    assert "ece,none" not in results["results"]["stsb"]  # its own process_results reports no acc


def test_a_correlation_of_one_pair_is_undefined_not_a_crash():
    # `--limit 1` on STS-B: r needs two points; scipy raises, the run must still finish
    from harness.scorers.correlation import pearson, spearman

    assert math.isnan(pearson([0.5], [1.0])) and math.isnan(spearman([0.5], [1.0]))
    assert pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]) == pytest.approx(0.9933992677987828)
