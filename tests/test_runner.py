"""The runner against lm-eval's own hf backend on the same weights: same requests, same numbers."""

from __future__ import annotations

import math

import pytest
from helpers import task_instances
from lm_eval.api.instance import Instance

pytestmark = pytest.mark.model

# Batched float32 on CPU: the two runners pad and batch differently, so sums of log-probs agree to
# float32 rounding, not bit for bit.
ABS_TOL = 2e-3


def assert_same_loglikelihoods(ours, ref):
    assert len(ours) == len(ref)
    for (ll, greedy), (ll_ref, greedy_ref) in zip(ours, ref):
        assert math.isclose(ll, ll_ref, rel_tol=1e-4, abs_tol=ABS_TOL), (ll, ll_ref)
        assert greedy == greedy_ref


def test_mmlu_zero_shot_loglikelihoods_match_lm_eval(harness_lm, reference_lm, shared_data):
    requests = task_instances("mmlu_anatomy", shared_data, num_fewshot=0, limit=12)
    assert len(requests) == 12 * 4
    assert_same_loglikelihoods(harness_lm.loglikelihood(requests), reference_lm.loglikelihood(requests))


def test_mmlu_five_shot_loglikelihoods_match_lm_eval(harness_lm, reference_lm, shared_data, monkeypatch):
    # the 5-shot preamble is cached once; the questions' rows attend it held once (cascade attention)
    from harness.models import attention

    cascades = []
    real = attention._cascade
    monkeypatch.setattr(attention, "_cascade", lambda *a: cascades.append(a[4].shape) or real(*a))
    from harness.models.hf import HarnessLM

    requests = task_instances("mmlu_abstract_algebra", shared_data, num_fewshot=5, limit=4)
    # pack_max_tokens=0: at limit 4 the preamble and questions would fit in one packed row
    ours = HarnessLM(loaded=harness_lm.loaded, batch_size=4, pack_max_tokens=0)
    assert_same_loglikelihoods(ours.loglikelihood(requests), reference_lm.loglikelihood(requests))
    layers = harness_lm.model.config.num_hidden_layers
    assert len(cascades) >= layers and len(cascades) % layers == 0  # every layer of the scoring passes
    assert all(shape[0] == 1 and shape[2] >= 128 for shape in cascades)  # the prefix, once


def test_multi_token_choices_match_lm_eval(harness_lm, reference_lm):
    # demo_capitals' choices are whole words (" Buenos Aires"): several continuation tokens each
    requests = task_instances("demo_capitals", limit=15)
    assert any(len(harness_lm.tok_encode(r.args[1])) > 1 for r in requests)
    assert_same_loglikelihoods(harness_lm.loglikelihood(requests), reference_lm.loglikelihood(requests))


def test_empty_context_and_prefix_requests_match_lm_eval(harness_lm, reference_lm):
    # empty context (prefix token rule), one input a prefix of another, trailing-space contexts
    args = [
        ("", "The river rose slowly."),
        ("The river", " rose"),
        ("The river rose", " slowly"),
        ("The river ", "rose slowly through the night"),
        ("Answer:", " A"),
        ("Answer:", " B"),
    ]
    requests = [Instance("loglikelihood", {}, a, i, ("adhoc", i, 1)) for i, a in enumerate(args)]
    assert_same_loglikelihoods(harness_lm.loglikelihood(requests), reference_lm.loglikelihood(requests))


def test_rolling_loglikelihood_matches_lm_eval_across_windows(harness_lm, reference_lm, smollm2_weights):
    requests = task_instances("demo_text")
    assert math.isclose(
        sum(harness_lm.loglikelihood_rolling(requests)), sum(reference_lm.loglikelihood_rolling(requests)), rel_tol=1e-5
    )
    # a short window forces several disjoint rolling windows per document
    from lm_eval.models.huggingface import HFLM

    from harness.models.hf import HarnessLM

    ours = HarnessLM(loaded=harness_lm.loaded, batch_size=3, max_length=16)
    ref = HFLM(
        pretrained=reference_lm.model, tokenizer=reference_lm.tokenizer, device="cpu", batch_size=3, max_length=16
    )
    for a, b in zip(ours.loglikelihood_rolling(requests), ref.loglikelihood_rolling(requests)):
        assert math.isclose(a, b, rel_tol=1e-4)


def test_greedy_generation_matches_lm_eval(harness_lm, reference_lm):
    requests = task_instances("demo_arithmetic", num_fewshot=3, limit=10)
    ours = harness_lm.generate_until(requests)
    ref = reference_lm.generate_until(requests)
    assert ours == ref
    assert all("\n" not in text for text in ours)  # the stop sequence is honoured and cut


def test_bbh_greedy_generation_with_its_stop_strings_matches_lm_eval(harness_lm, reference_lm, shared_data):
    requests = task_instances("bbh_fewshot_boolean_expressions", shared_data, num_fewshot=3, limit=6)
    assert harness_lm.generate_until(requests) == reference_lm.generate_until(requests)


def test_batch_size_does_not_change_scores(harness_lm, reference_lm):
    from harness.models.hf import HarnessLM

    requests = task_instances("demo_capitals", limit=10)
    one = HarnessLM(loaded=harness_lm.loaded, batch_size=1).loglikelihood(requests)
    many = HarnessLM(loaded=harness_lm.loaded, batch_size=16).loglikelihood(requests)
    assert_same_loglikelihoods(one, many)
    # and both are lm-eval's: a bug shared by every batch size would pass the first check alone
    assert_same_loglikelihoods(one, reference_lm.loglikelihood(requests))


def test_short_rows_fill_a_batch_by_tokens_and_keep_lm_evals_numbers(harness_lm, reference_lm):
    from harness.models.batching import TOKENS_PER_BATCH_ROW
    from harness.models.hf import HarnessLM

    shapes: list[tuple[int, int]] = []  # per scoring pass: rows, widest row
    requests = task_instances("demo_capitals", limit=15)  # rows of a few tokens each
    ours = HarnessLM(
        loaded=harness_lm.loaded,
        batch_size=2,
        pack_max_tokens=0,
        on_scoring_pass=lambda p: shapes.append((len(p.seqs), max(map(len, p.seqs)))),
    )
    assert_same_loglikelihoods(ours.loglikelihood(requests), reference_lm.loglikelihood(requests))
    assert max(rows for rows, _ in shapes) > 2  # more rows than batch_size where they are short
    assert all(rows <= 2 or rows * width <= 2 * TOKENS_PER_BATCH_ROW for rows, width in shapes)


@pytest.mark.parametrize("pack_max_tokens", [0, 96, 4096], ids=["cached-prefixes", "cache-then-pack", "all-packed"])
def test_shared_prefixes_are_computed_once_and_change_no_number(harness_lm, reference_lm, pack_max_tokens, monkeypatch):
    # three questions after one long preamble, four multi-token choices each: the preamble is
    # computed once, each question's context once, and only the choices per choice; shared
    # prefixes get a cached pass (KV cache reused) or are packed into one row (trunk, then each
    # branch under a custom mask) or, nested, the preamble is cached and each question packed
    preamble = " ".join(r.args[0] for r in task_instances("demo_text")[:2])
    questions = [
        "Which word best describes the river?",
        "What did the farmers move?",
        "Where is the old barn that the farmers built?",
    ]
    choices = [
        " It rose slowly overnight",
        " The animals went up the hill",
        " Behind the village, on a hill",
        " Nobody could remember",
    ]
    requests = [
        Instance("loglikelihood", {}, (f"{preamble}\n\nQuestion: {q}\nAnswer:", c), i, ("adhoc", i, 1))
        for i, (q, c) in enumerate((q, c) for q in questions for c in choices)
    ]
    from harness.models.hf import HarnessLM
    from harness.models.prefix_plan import MIN_PREFIX_STEP

    passes = []  # every scoring pass

    ours = HarnessLM(
        loaded=harness_lm.loaded, batch_size=8, pack_max_tokens=pack_max_tokens, on_scoring_pass=passes.append
    )
    preamble_len = len(ours.tok_encode(preamble))
    assert 96 < preamble_len < 4096 - 200  # so the three settings take the three layouts
    # rows after the cached preamble attend it held once (cascade attention), plain or packed rows
    from harness.models import attention, kv_cache

    monkeypatch.setattr(kv_cache, "CASCADE_MIN_PREFIX", 64)
    cascades = []
    real = attention._cascade
    monkeypatch.setattr(attention, "_cascade", lambda *a: cascades.append(a[6] is not None) or real(*a))
    scores = ours.loglikelihood(requests)
    assert_same_loglikelihoods(scores, reference_lm.loglikelihood(requests))
    # cached: 12 plain rows; nested: a packed row under our mask; all packed: no cached prefix
    assert bool(cascades) == (pack_max_tokens != 4096) and (pack_max_tokens != 96 or all(cascades))
    without_sharing = sum(len(ctx) + len(cont) - 1 for ctx, cont in (ours._encode_pair(*r.args) for r in requests))
    work = ours.report().work
    assert work.tokens_computed < without_sharing / 3
    if pack_max_tokens == 4096:  # one row holds the prefix tree: preamble, questions, choices, each once
        inputs = [tuple((ctx + cont)[:-1]) for ctx, cont in (ours._encode_pair(*r.args) for r in requests)]
        distinct_prefixes = len({inp[:k] for inp in inputs for k in range(1, len(inp) + 1)})
        # (siblings sharing under MIN_PREFIX_STEP tokens keep their own copies of those tokens)
        assert distinct_prefixes <= work.tokens_computed <= distinct_prefixes + len(requests) * MIN_PREFIX_STEP
    # prefix trees laid out under a custom mask (a row may hold several)
    packed_trees = sum(1 for p in passes for nodes in p.layouts for *_, ancestors in nodes if not ancestors)
    assert packed_trees == {0: 0, 96: 3, 4096: 1}[pack_max_tokens]
    # cached: one pass caches the preamble, then the 12 rows after it (too short to cache) are scored;
    # nested: the preamble cached, then one batch of the 3 packed questions; all packed: one row, one pass
    assert work.forward_passes - len(passes) == {0: 1, 96: 1, 4096: 0}[pack_max_tokens]
    if pack_max_tokens:
        assert len(passes) == 1


def test_short_question_trees_share_rows_with_little_padding_and_keep_lm_evals_numbers(
    harness_lm, reference_lm, shared_data
):
    # mmlu continuation: each question is a prefix tree (the question once, then its four answers);
    # trees are laid into rows, several to a short row, each seeing the cached preamble and itself only
    from harness.models.batching import MAX_PAD_FRACTION
    from harness.models.hf import HarnessLM

    passes: list[tuple[list[int], list[int]]] = []  # per pass: row widths, trees per row

    def record(p):
        trees = [max(1, sum(1 for *_, ancestors in nodes if not ancestors)) for nodes in p.layouts]
        passes.append(([len(s) for s in p.seqs], trees))

    requests = task_instances("mmlu_abstract_algebra_continuation", shared_data, limit=24)
    ours = HarnessLM(loaded=harness_lm.loaded, batch_size=4, on_scoring_pass=record)
    assert ours.model.config._attn_implementation == "harness_sdpa"  # blocked attention on the CPU
    assert_same_loglikelihoods(ours.loglikelihood(requests), reference_lm.loglikelihood(requests))
    trees = [t for _, per_row in passes for t in per_row]
    assert max(trees) > 1 and len(trees) < sum(trees)  # some rows hold several trees
    real = sum(sum(widths) for widths, _ in passes)
    padded = sum(len(widths) * max(widths) for widths, _ in passes)
    assert padded - real <= MAX_PAD_FRACTION * padded


def test_slices_of_long_rows_stop_where_padding_would_pass_a_few_percent(harness_lm, reference_lm, shared_data):
    # us history continuation: passages shared by several questions make rows of a few hundred
    # tokens; once a slice holds batch_size * TOKENS_PER_BATCH_ROW tokens, a row that would make it
    # pad more than FULL_PAD_FRACTION goes to the next slice (more rows would add padding, not speed);
    # the scores stay lm-eval's
    from harness.models.batching import FULL_PAD_FRACTION, TOKENS_PER_BATCH_ROW
    from harness.models.hf import HarnessLM

    passes: list[list[int]] = []  # per pass: its row widths
    requests = task_instances("mmlu_high_school_us_history_continuation", shared_data, limit=10)
    ours = HarnessLM(
        loaded=harness_lm.loaded, batch_size=2, on_scoring_pass=lambda p: passes.append([len(s) for s in p.seqs])
    )
    scores = ours.loglikelihood(requests)
    full = [w for w in passes if (len(w) - 1) * max(w) >= 2 * TOKENS_PER_BATCH_ROW]  # full before its last row
    assert full
    assert all(len(w) * max(w) - sum(w) <= FULL_PAD_FRACTION * len(w) * max(w) for w in full)
    assert_same_loglikelihoods(scores, reference_lm.loglikelihood(requests))


def test_picked_log_probs_and_greedy_flags_are_log_softmax_and_argmax():
    # Scorer.pick runs the log-softmax a few rows at a time and takes greedy from max's indices: the
    # values of one log_softmax and one argmax over all rows (lm-eval's formula), ties included
    import torch

    from harness.models.scoring import LOG_SOFTMAX_ROWS, Scorer

    torch.manual_seed(0)
    logits = torch.randn(3 * LOG_SOFTMAX_ROWS + 5, 1000) * 4
    top = logits.amax(dim=-1)
    logits[2, [10, 20]] = top[2] + 1  # a tie for the max: argmax takes the first index
    position = [r for r in range(len(logits)) for _ in range(r % 3 + 1)] + [2, 2]
    token = [int(t) for t in torch.randint(0, 1000, (len(position) - 2,))] + [10, 20]
    for k in range(0, len(position) - 2, 2):
        token[k] = int(logits[position[k]].argmax())
    picked, greedy = Scorer.pick(logits, position, token)
    pos, tok = torch.tensor(position), torch.tensor(token)
    assert torch.equal(picked, torch.log_softmax(logits, dim=-1)[pos, tok])
    assert torch.equal(greedy, logits.argmax(dim=-1)[pos] == tok)
    assert greedy[-2] and not greedy[-1] and greedy.sum() >= (len(position) - 2) // 2


def test_auto_batch_size_follows_the_memory_budget_and_keeps_the_scores(harness_lm, reference_lm):
    from harness.models.hf import HarnessLM

    requests = task_instances("demo_capitals", limit=12)
    reference = HarnessLM(loaded=harness_lm.loaded, batch_size=4).loglikelihood(requests)
    assert_same_loglikelihoods(reference, reference_lm.loglikelihood(requests))  # the invariant's anchor: lm-eval

    def runner(budget: int, sizes: list[int]):
        return HarnessLM(
            loaded=harness_lm.loaded,
            batch_size="auto",
            pack_max_tokens=0,  # a row per request
            memory_budget=lambda: budget,
            on_scoring_pass=lambda p: sizes.append(len(p.seqs)),
        )

    tight_sizes: list[int] = []
    ample_sizes: list[int] = []
    tight, ample = runner(1, tight_sizes), runner(1 << 40, ample_sizes)
    assert tight.batcher.auto and tight.batcher.batch_size == 64
    assert_same_loglikelihoods(tight.loglikelihood(requests), reference)
    assert_same_loglikelihoods(ample.loglikelihood(requests), reference)
    assert set(tight_sizes) == {1}  # nothing fits: one row at a time, never a crash
    assert max(ample_sizes) > 4 and len(ample_sizes) < len(tight_sizes)  # room: bigger, fewer passes


def test_out_of_memory_halves_the_batch_instead_of_crashing(harness_lm, reference_lm):
    import torch

    from harness.models.hf import HarnessLM

    def tight_device(p):  # fault injection: there is no accelerator here to run out of memory for real
        if len(p.seqs) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    requests = task_instances("demo_capitals", limit=10)
    tight = HarnessLM(
        loaded=harness_lm.loaded,
        batch_size=16,
        pack_max_tokens=0,  # a row per request
        on_scoring_pass=tight_device,
    )
    reference = HarnessLM(loaded=harness_lm.loaded, batch_size=4).loglikelihood(requests)
    assert_same_loglikelihoods(reference, reference_lm.loglikelihood(requests))  # the anchor: lm-eval's numbers
    assert_same_loglikelihoods(tight.loglikelihood(requests), reference)
    assert 1 <= tight.batcher.batch_size <= 2  # halved until a slice fits (a 3-item tail halves to 1)


def test_compiled_forward_gives_the_same_scores(harness_lm, reference_lm, smollm2_weights):
    from harness.models.catalog import load_model
    from harness.models.hf import HarnessLM

    requests = task_instances("demo_capitals", limit=6)
    compiled = HarnessLM(loaded=load_model("smollm2-135m"), batch_size=8, compile=True)  # its own model copy
    assert hasattr(compiled.model.forward, "_torchdynamo_orig_callable")
    ours = harness_lm.loglikelihood(requests)
    assert_same_loglikelihoods(ours, reference_lm.loglikelihood(requests))  # the anchor: lm-eval's numbers
    assert_same_loglikelihoods(compiled.loglikelihood(requests), ours)


def test_older_transformers_path_keeps_the_same_columns_in_every_row(harness_lm, reference_lm, shared_data):
    # transformers before the boolean logits_to_keep: the LM head runs on the union of the rows' columns
    from harness.models.hf import HarnessLM

    requests = task_instances("mmlu_anatomy_continuation", shared_data, num_fewshot=0, limit=6)
    union = HarnessLM(loaded=harness_lm.loaded, batch_size=8)
    if not union.scorer.row_logits:
        pytest.skip("this transformers has no per-row logits_to_keep: every run here takes the union path already")
    union.scorer.row_logits = False  # the per-row path turned off: the union of the rows' columns
    assert_same_loglikelihoods(union.loglikelihood(requests), reference_lm.loglikelihood(requests))


def test_prompts_beyond_the_context_window_are_cut_as_lm_eval_cuts_them_and_counted(harness_lm, smollm2_weights):
    from lm_eval.models.huggingface import HFLM

    from harness.models.hf import HarnessLM

    requests = task_instances("demo_capitals", limit=6)
    window = 12  # shorter than every question: every request is left-truncated
    ours = HarnessLM(loaded=harness_lm.loaded, batch_size=4, max_length=window)
    ref = HFLM(pretrained=str(smollm2_weights), device="cpu", dtype="float32", batch_size=4, max_length=window)
    assert_same_loglikelihoods(ours.loglikelihood(requests), ref.loglikelihood(requests))
    too_long = sum(len(ctx) + len(cont) > window + 1 for ctx, cont in (ref._encode_pair(*r.args) for r in requests))
    assert too_long > 0 and ours.report().work.truncated_requests == too_long
