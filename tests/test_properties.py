"""Property-based tests (hypothesis): scorers against their references and laws, the YAML loader, redaction."""

from __future__ import annotations

import pytest
import sacrebleu
from helpers import squad_official
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import TaskConfigError
from harness.redact import MASK, MIN_SECRET_LENGTH, redact, secret_values
from harness.scorers.bleu import corpus_score, new_metric, reference_streams, scores_from_statistics, segment_statistics
from harness.scorers.calibration import expected_calibration_error
from harness.scorers.rouge import score_rouge
from harness.scorers.squad import squad_exact_match, squad_f1
from harness.tasks import check_yaml_syntax

# answer-like text: words, articles, punctuation, case, odd whitespace and some non-ASCII
WORDS = st.sampled_from(
    [
        "the",
        "a",
        "an",
        "The",
        "cat",
        "Cat",
        "sat",
        "on",
        "mat",
        "1,000",
        "U.S.",
        "don't",
        "naïve",
        "café",
        "—",
        "(x)",
        "42",
        "mat.",
        "an-other",
        "\t",
        "  ",
    ]
)
TEXT = st.lists(WORDS, max_size=12).map(" ".join) | st.text(max_size=40)

OFFICIAL = squad_official()


@given(prediction=TEXT, golds=st.lists(TEXT, min_size=1, max_size=3))
def test_squad_scores_equal_the_official_script(prediction, golds):
    f1 = OFFICIAL.metric_max_over_ground_truths(OFFICIAL.f1_score, prediction, golds)
    em = OFFICIAL.metric_max_over_ground_truths(OFFICIAL.exact_match_score, prediction, golds)
    assert squad_f1(golds, prediction) == pytest.approx(f1, abs=1e-12)
    assert squad_exact_match(golds, prediction) == float(em)


@settings(max_examples=60, deadline=None)
@given(a=TEXT, b=TEXT, c=TEXT)
def test_rouge_is_bounded_symmetric_and_takes_the_best_reference(a, b, c):
    for kind in ("rouge1", "rouge2", "rougeL"):
        ab = score_rouge(a, b, kind)
        assert 0.0 <= ab <= 1.0
        assert ab == pytest.approx(score_rouge(b, a, kind))  # F-measure: precision and recall swap
        assert score_rouge([a, c], b, kind) == pytest.approx(max(ab, score_rouge(c, b, kind)))


SENTENCES = st.lists(st.lists(WORDS, min_size=1, max_size=10).map(" ".join), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.lists(WORDS, max_size=10).map(" ".join), st.lists(WORDS, min_size=1, max_size=10).map(" ".join)),
        min_size=1,
        max_size=6,
    )
)
def test_corpus_bleu_from_segment_statistics_equals_sacrebleu(pairs):
    # the bootstrap resamples segment statistics: their sum must give sacrebleu's corpus score
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    expected = sacrebleu.corpus_bleu(predictions, [references]).score
    assert corpus_score("bleu", predictions, references) == pytest.approx(expected)
    metric = new_metric("bleu")
    stats = segment_statistics(metric, predictions, reference_streams(references))
    assert scores_from_statistics(metric, stats.sum(axis=0, keepdims=True))[0] == pytest.approx(expected)


@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=50), st.randoms())
def test_ece_is_bounded_and_order_free(rows, rnd):
    conf, correct = [c for c, _ in rows], [float(k) for _, k in rows]
    ece = expected_calibration_error(conf, correct)
    assert 0.0 <= ece <= 1.0 + 1e-12
    order = list(range(len(rows)))
    rnd.shuffle(order)
    assert expected_calibration_error([conf[i] for i in order], [correct[i] for i in order]) == pytest.approx(ece)
    # a model that is always right and sure of it is perfectly calibrated
    assert expected_calibration_error([1.0] * len(rows), [1.0] * len(rows)) == 0.0


YAMLISH = st.lists(
    st.sampled_from(
        [
            "task: t",
            "dataset_path: x",
            "  - a",
            "- b",
            "key: [1, 2",
            "key: {a: 1}",
            "!function utils.f",
            "x: !function utils.f",
            "'unclosed",
            "\t- tab",
            "a: b: c",
            "---",
            "...",
            ": :",
            "include: other.yaml",
            "%YAML 1.1",
            "&a x",
            "*a",
            "? k",
            "|",
            ">-",
            "# comment",
            "",
        ]
    ),
    max_size=8,
).map("\n".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=YAMLISH | st.text(max_size=60), raw=st.binary(max_size=30))
def test_the_yaml_loader_accepts_or_names_the_file(text, raw, tmp_path):
    # any text, and any bytes (not UTF-8 too), gives either a pass or a TaskConfigError naming the file
    for name, content in (("t.yaml", text.encode("utf-8")), ("b.yaml", raw)):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(content)
        try:
            check_yaml_syntax(folder)
        except TaskConfigError as exc:
            assert str(folder / name) in str(exc) and "\n" not in str(exc)


def strings_in(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from strings_in(v)


@given(
    secret=st.text(min_size=MIN_SECRET_LENGTH, max_size=20).filter(lambda s: s.strip()),
    around=st.lists(st.text(max_size=10), min_size=1, max_size=4),
)
def test_redaction_leaves_no_secret_behind(secret, around):
    secrets = secret_values({"HF_TOKEN": secret, "TOKENIZERS_PARALLELISM": "false", "HOME": "/root"})
    assert secrets == [secret]
    record = {"argv": secret.join(around), secret: [secret, (around[0], secret + around[-1])], "n": 3}
    cleaned = redact(record, secrets)
    assert cleaned["n"] == 3
    assert not any(secret in text for text in strings_in(cleaned))
    if len(around) > 1:
        assert MASK in next(iter(strings_in(cleaned["argv"])))


def test_ordinary_variables_are_no_secrets():
    env = {
        "TOKENIZERS_PARALLELISM": "false",
        "PWD": "/home/user/project",
        "KEYBOARD": "us-international",
        "OPENAI_API_KEY": "sk-abcdef123456",
        "HF_TOKEN": "hf_abcdefghij",
        "MY_SECRET": "s3cr3t-value",
    }
    assert set(secret_values(env)) == {"sk-abcdef123456", "hf_abcdefghij", "s3cr3t-value"}
