"""Generation settings on the real model: OpenAI penalties, seeded sampling, repeats, precedence, bad values."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import torch
from clirun import harness as harness_cli
from conftest import REPO
from lm_eval.api.instance import Instance

TEXTS = [json.loads(line)["text"] for line in (REPO / "tasks/demo/text.jsonl").read_text().splitlines()]
# a shared instruction of more than 16 tokens: the runner prefills it once (prefix cache) for every row
PROMPTS = [f"Continue the passage in your own words, in plain English.\n\nPassage: {t.split('. ')[0]}." for t in TEXTS]


def requests(gen_kwargs: dict, prompts=PROMPTS, repeats: int = 1, task: str = "gen_test") -> list[Instance]:
    """Instances as lm-eval's evaluator sends them: each request object repeated `repeats` times."""
    out = []
    for i, prompt in enumerate(prompts):
        out += [Instance("generate_until", {}, (prompt, dict(gen_kwargs)), i, (task, i, repeats))] * repeats
    return out


def distinct_token_ratio(lm, texts: list[str]) -> float:
    """Mean over outputs of distinct tokens / tokens: 1.0 means no token repeats."""
    ratios = []
    for text in texts:
        ids = lm.tok_encode(text, add_special_tokens=False)
        ratios.append(len(set(ids)) / len(ids))
    return sum(ratios) / len(ratios)


# ------------------------------------------------------------------ settings that need no model
def test_transformers_sampling_defaults_are_the_ones_we_fill_in():
    # under lm-eval's hf backend, model.generate falls back to these when nothing else sets them
    from transformers import GenerationConfig

    from harness.models.generation import TRANSFORMERS_SAMPLING_DEFAULTS

    defaults = GenerationConfig._get_default_generation_params()
    for key, value in TRANSFORMERS_SAMPLING_DEFAULTS.items():
        assert defaults.get(key) == value, key


def test_seeded_sampler_draws_follow_the_softmax_of_the_warped_scores():
    # 20,000 draws over a 12-token vocabulary with temperature 0.7 and top_k 8; the expected
    # distribution is computed here by hand: softmax(logits / T) over the 8 largest, zero elsewhere
    from harness.models.generation import GenerationSettings

    logits = torch.tensor([[3.1, 2.9, 2.2, 1.7, 1.5, 0.4, 0.3, -0.2, -0.5, -1.0, -2.0, -4.0]])
    n = 20_000
    settings = GenerationSettings(until=(), max_gen_toks=1, do_sample=True, temperature=0.7, top_k=8, top_p=1.0)
    processors = settings.logits_processors(prompt_len=1, row_seeds=list(range(n)))
    scores = processors(torch.zeros((n, 1), dtype=torch.long), logits.repeat(n, 1))
    freq = torch.bincount(scores.argmax(dim=-1), minlength=12).double() / n
    kept = logits[0].argsort(descending=True)[:8]
    expected = torch.zeros(12, dtype=torch.float64)
    expected[kept] = torch.softmax(logits[0, kept].double() / 0.7, dim=0)
    sigma = (expected * (1 - expected) / n).sqrt()
    assert (freq - expected).abs().max() <= (5 * sigma).max()
    assert freq[expected == 0].sum() == 0  # nothing outside the top 8


# ------------------------------------------------------------------ penalties


@pytest.mark.model
def test_penalised_logits_follow_the_openai_formula_over_generated_tokens_only(harness_lm):
    from harness.models.generation import OpenAIPenaltyLogitsProcessor

    model = harness_lm.model
    prompts = [tuple(harness_lm.tok_encode(PROMPTS[0])), tuple(harness_lm.tok_encode(PROMPTS[1][:40]))]
    # the runner's batch layout: [prefix | pads | suffix], pads (the EOS id here) inside the prompt
    ids, _ = harness_lm.decoder.pad_between((), list(prompts))
    width = ids.shape[1]
    generated = torch.tensor([[198, 504, 504, 30, 198, 504], [30, 30, 30, 2, 504, 198]])  # repeats, EOS too
    full = torch.cat([ids, generated], dim=1)
    with torch.no_grad():  # real SmolLM2 next-token logits of each row, unpadded
        scores = torch.stack(
            [model(torch.tensor([list(p) + generated[r].tolist()])).logits[0, -1] for r, p in enumerate(prompts)]
        )
    for frequency, presence in ((0.7, 0.4), (-0.5, 1.5), (2.0, -2.0)):
        out = OpenAIPenaltyLogitsProcessor(width, frequency, presence)(full, scores.clone())
        for row in range(2):
            expected = scores[row].clone()
            for token, count in Counter(generated[row].tolist()).items():  # OpenAI: mu[j] - c[j]*a_f - (c[j]>0)*a_p
                expected[token] -= count * frequency + presence
            torch.testing.assert_close(out[row], expected, rtol=0, atol=1e-5)
        prompt_only = set(prompts[0]) - set(generated[0].tolist())
        assert prompt_only and all(out[0, t] == scores[0, t] for t in prompt_only)  # the prompt never counts


@pytest.mark.model
def test_penalised_generation_equals_a_step_by_step_reference_decode(harness_lm):
    # the runner (batch of 4, shared preamble prefilled once, pads between) against a plain loop:
    # full forward pass, the OpenAI formula by hand over the tokens generated so far, argmax
    from harness.models.hf import HarnessLM

    lm = HarnessLM(loaded=harness_lm.loaded, batch_size=4)
    n, frequency, presence = 20, 0.8, 0.3
    prompts = PROMPTS[:4]
    ours = lm.generate_until(
        requests(
            {"until": [], "max_gen_toks": n, "frequency_penalty": frequency, "presence_penalty": presence}, prompts
        ),
        disable_tqdm=True,
    )
    for prompt, text in zip(prompts, ours):
        context, generated = harness_lm.tok_encode(prompt), []
        for _ in range(n):
            with torch.no_grad():
                logits = harness_lm.model(torch.tensor([context + generated])).logits[0, -1].double()
            for token, count in Counter(generated).items():
                logits[token] -= frequency * count + presence
            generated.append(int(logits.argmax()))
            if generated[-1] == harness_lm.eot_token_id:
                break
        assert text == harness_lm.tok_decode(generated)


@pytest.mark.model
def test_a_positive_penalty_reduces_repeated_tokens_on_the_real_model(harness_lm):
    base = {"until": [], "max_gen_toks": 48}
    plain = harness_lm.generate_until(requests(base), disable_tqdm=True)
    frequency = harness_lm.generate_until(requests({**base, "frequency_penalty": 1.0}), disable_tqdm=True)
    presence = harness_lm.generate_until(requests({**base, "presence_penalty": 1.0}), disable_tqdm=True)
    ratios = {
        name: distinct_token_ratio(harness_lm, texts)
        for name, texts in (("none", plain), ("frequency", frequency), ("presence", presence))
    }
    print("distinct-token ratio over", len(PROMPTS), "prompts, 48 greedy tokens:", ratios)
    assert ratios["frequency"] > ratios["none"] + 0.1
    assert ratios["presence"] > ratios["none"] + 0.1


# ------------------------------------------------------------------ sampling
@pytest.mark.model
def test_sampling_depends_on_the_seed_only_not_on_the_batch(harness_lm):
    from harness.models.hf import HarnessLM

    sampled = {"until": [], "max_gen_toks": 24, "do_sample": True, "temperature": 0.8}
    prompts = PROMPTS[:4]
    first = harness_lm.generate_until(requests({**sampled, "seed": 11}, prompts), disable_tqdm=True)
    again = harness_lm.generate_until(requests({**sampled, "seed": 11}, prompts), disable_tqdm=True)
    other = harness_lm.generate_until(requests({**sampled, "seed": 12}, prompts), disable_tqdm=True)
    one_by_one = HarnessLM(loaded=harness_lm.loaded, gen_batch_size=1).generate_until(
        requests({**sampled, "seed": 11}, prompts), disable_tqdm=True
    )
    greedy = harness_lm.generate_until(requests({"until": [], "max_gen_toks": 24}, prompts), disable_tqdm=True)
    assert first == again == one_by_one
    assert all(a != b for a, b in zip(first, other))
    assert first != greedy


@pytest.mark.model
def test_repeated_identical_requests_get_different_samples(harness_lm):
    # what lm-eval's evaluator sends for `repeats: k`: the same Instance k times in a row
    k = 6
    for temperature in (0.7, 0.2):  # 0.2: lm-eval's gsm8k self-consistency setting
        reqs = requests(
            {"until": ["\n\n"], "max_gen_toks": 24, "do_sample": True, "temperature": temperature},
            PROMPTS[:2],
            repeats=k,
        )
        out = harness_lm.generate_until(reqs, disable_tqdm=True)
        for doc in range(2):
            samples = out[doc * k : (doc + 1) * k]
            assert len(set(samples)) >= (k if temperature > 0.5 else 3), samples
    # greedy repeats are one computation and one answer
    greedy = harness_lm.generate_until(
        requests({"until": ["\n\n"], "max_gen_toks": 12}, PROMPTS[:1], repeats=3), disable_tqdm=True
    )
    assert len(set(greedy)) == 1


@pytest.mark.model
def test_finished_rows_leave_the_batch_and_outputs_equal_transformers_generate(harness_lm):
    from lm_eval.models.utils import postprocess_generated_text
    from lm_eval.models.utils_hf import stop_sequences_criteria

    prompts = [
        "Q: What is 2 + 2?\nA:",
        "Write a long story about a dragon who learns to read.\n\n",
        "The capital of France is",
        "List three colours, one a line:\n-",
    ]
    max_new = 40
    settings = harness_lm.generation_settings({"until": ["\n", "."], "max_gen_toks": max_new})
    until = list(settings.until)
    ids, mask = harness_lm.decoder.pad_between((), [tuple(harness_lm.tok_encode(p)) for p in prompts])
    width = ids.shape[1]
    before = harness_lm.report().work.decode_row_steps
    ours = harness_lm.decoder.decode(ids, mask, None, 0, settings.logits_processors(width, None), until, max_new)
    row_steps = harness_lm.report().work.decode_row_steps - before
    # the reference: transformers' own generate on the same batch, with lm-eval's stop criteria
    ref = harness_lm.model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_length=width + max_new,
        do_sample=False,
        stopping_criteria=stop_sequences_criteria(harness_lm.tokenizer, until, width, len(prompts)),
        pad_token_id=harness_lm.tokenizer.pad_token_id,
    )
    for row, tokens in enumerate(ours):
        theirs = ref[row, width:].tolist()
        assert theirs[: len(tokens)] == tokens  # same tokens up to where our row stopped
        assert postprocess_generated_text(harness_lm.tok_decode(tokens), until, None) == postprocess_generated_text(
            harness_lm.tok_decode(theirs), until, None
        )
    lengths = [len(t) for t in ours]
    assert len(set(lengths)) > 1, lengths  # rows finished at different steps
    # each row ran one decoding step per token after its first, and none after it finished
    assert row_steps == sum(n - 1 for n in lengths) < len(prompts) * (max(lengths) - 1)


# ------------------------------------------------------------------ precedence and the run record
TASK_YAML = """
task: gen_precedence
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Continue the passage.\\n\\nPassage: {{{{text[:80]}}}}"
doc_to_target: "{{{{text}}}}"
repeats: 4
generation_kwargs:
  until: ["\\n\\n"]
  do_sample: true
  temperature: 0.7
  top_k: 20
  max_gen_toks: 30
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
"""


@pytest.mark.model
def test_cli_over_task_over_defaults_and_the_settings_used_are_recorded(harness_lm, tmp_path):
    from harness.engine import run_evaluation
    from harness.spec import RunSpec, parse_gen_kwargs
    from harness.store import RunStore, read_json, read_samples

    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks/gen_precedence.yaml").write_text(TASK_YAML.format(data=REPO / "tasks/demo/text.jsonl"))
    spec = RunSpec(
        model="smollm2-135m",
        tasks=("gen_precedence",),
        limit=3,
        batch_size=4,
        gen_kwargs=parse_gen_kwargs("max_new_tokens=12,seed=7,frequency_penalty=0.5"),
        include_paths=(str(tmp_path / "tasks"),),
    )
    run_dir = RunStore(tmp_path / "runs").save(run_evaluation(spec, loaded=harness_lm.loaded))
    record = read_json(run_dir, "spec.json")["tasks"]["gen_precedence"]["generation"]
    assert record["settings"] == {
        "do_sample": True,
        "max_gen_toks": 12,
        "until": ["\n\n", "<|im_end|>"],
        "frequency_penalty": 0.5,
        "presence_penalty": 0.0,
        "temperature": 0.7,
        "top_k": 20,
        "top_p": 1.0,
        "min_p": None,
        "seed": 7,
    }
    assert record["origin"] == {
        "do_sample": "task",
        "max_gen_toks": "cli",
        "until": "task",
        "frequency_penalty": "cli",
        "presence_penalty": "default (off)",
        "temperature": "task",
        "top_k": "task",
        "top_p": "transformers default",
        "min_p": "transformers default",
        "seed": "cli",
    }
    samples = read_samples(run_dir)
    assert len(samples) == 3
    for s in samples:  # all k samples of a doc are kept, they differ, and each obeys the CLI's length
        assert len(s["resps"]) == 1  # one request per doc, lm-eval sends it `repeats` times
        texts = s["resps"][0]
        assert len(texts) == 4 and len(set(texts)) >= 3, texts
        assert all(len(harness_lm.tok_encode(t, add_special_tokens=False)) <= 13 for t in texts)


# ------------------------------------------------------------------ bad values
@pytest.mark.parametrize(
    "value, expected",
    [
        ("frequency_penalty=abc", "frequency_penalty must be a number from -2 to 2"),
        ("frequency_penalty=5", "frequency_penalty must be a number from -2 to 2"),
        ('{"presence_penalty": -2.5}', "presence_penalty must be a number from -2 to 2"),
    ],
)
def test_bad_penalty_on_the_command_line_gets_one_line_and_exit_2(value, expected):
    out = harness_cli("run", "--tasks", "demo_arithmetic", "--gen-kwargs", value)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in out.stderr


@pytest.mark.model
def test_bad_value_in_a_task_yaml_is_a_user_error_naming_the_task(harness_lm):
    from harness.errors import UserError

    with pytest.raises(UserError, match="task 'gen_test' generation_kwargs: presence_penalty must be"):
        harness_lm.generate_until(requests({"until": [], "presence_penalty": 3}), disable_tqdm=True)


# ------------------------------------------------------------------ continuous batching
def reference_generate(lm, prompt: str, until: list[str], max_new: int, ids: list[int] | None = None) -> list[int]:
    """transformers' model.generate on one prompt alone (no padding, no cache tricks), lm-eval's stop
    criteria: the tokens up to and including the one that completes a stop string. ids: the prompt's
    tokens where they are not its encoding."""
    from lm_eval.models.utils_hf import stop_sequences_criteria

    ids = torch.tensor([lm.tok_encode(prompt) if ids is None else ids])
    out = lm.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new,
        do_sample=False,
        stopping_criteria=stop_sequences_criteria(lm.tokenizer, until, ids.shape[1], 1),
        pad_token_id=lm.tokenizer.pad_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


def continuous_case(lm, prompts: list[str], until: list[str], max_new: int, slots: int):
    """(our texts and work figures at `slots` rows, each prompt's reference tokens)."""
    from lm_eval.models.utils import postprocess_generated_text

    from harness.models.hf import HarnessLM

    ours_lm = HarnessLM(loaded=lm.loaded, gen_batch_size=slots)
    ours = ours_lm.generate_until(requests({"until": until, "max_gen_toks": max_new}, prompts), disable_tqdm=True)
    refs = [reference_generate(lm, p, until, max_new) for p in prompts]
    eos = lm.tok_decode(lm.eot_token_id, skip_special_tokens=False)
    expected = [postprocess_generated_text(lm.tok_decode(t), until + [eos], None) for t in refs]
    return ours, expected, refs, ours_lm.report().work


@pytest.mark.model
def test_continuous_batching_refills_freed_rows_and_equals_generate_alone(harness_lm):
    # a shared preamble (computed once), prompts of different lengths, answers that end at different
    # steps; 3 rows for 7 prompts: finished rows are refilled from the queue
    preamble = "Answer each question in one short line, then stop.\n\n" * 3
    questions = [
        "Q: What is 2 + 2?\nA:",
        "Q: Name a large animal that lives in Africa and eats grass all day long.\nA:",
        "Q: What is the capital of France?\nA:",
        "Q: Tell me a long story about a dragon.\nA:",
        "Q: Which colour is the sky on a clear day?\nA:",
        "Q: Why do birds sing in the morning?\nA:",
        "Q: Count from one to ten.\nA:",
    ]
    prompts = [preamble + q for q in questions]
    ours, expected, refs, work = continuous_case(harness_lm, prompts, ["\n"], 24, slots=3)
    assert ours == expected
    lengths = [len(t) for t in refs]
    assert len(set(lengths)) > 2, lengths
    assert work.max_batch_requests == 3  # never more rows than slots
    # each request decoded one step per token after its first, none after it finished
    assert work.decode_row_steps == sum(n - 1 for n in lengths)


@pytest.mark.model
def test_an_empty_prompt_generates_from_the_prefix_token(harness_lm):
    # nothing to condition on: the row starts from the prefix token (BOS, else EOS), as lm-eval's
    # loglikelihood does for an empty context: alone in its batch and beside an ordinary row
    from lm_eval.models.utils import postprocess_generated_text

    from harness.models.hf import HarnessLM

    until, max_new = ["\n\n"], 12
    other = "Q: What is 2 + 2?\nA:"
    eos = harness_lm.tok_decode(harness_lm.eot_token_id, skip_special_tokens=False)
    refs = [
        reference_generate(harness_lm, "", until, max_new, ids=[harness_lm.prefix_token_id]),
        reference_generate(harness_lm, other, until, max_new),
    ]
    expected = [postprocess_generated_text(harness_lm.tok_decode(t), until + [eos], None) for t in refs]
    for slots in (2, 1):
        ours_lm = HarnessLM(loaded=harness_lm.loaded, gen_batch_size=slots)
        ours = ours_lm.generate_until(requests({"until": until, "max_gen_toks": max_new}, ["", other]), True)
        assert ours == expected


@pytest.mark.model
def test_continuous_batching_keeps_gemma_sliding_windows(gemma_lm):
    # Gemma 3's local layers see the last 512 positions only: prompts longer than that, after a
    # shared preamble, must decode as model.generate decodes each alone
    window = gemma_lm.model.config.sliding_window
    preamble = " ".join(f"Fact {i}: the number {i} follows {i - 1}." for i in range(1, 80)) + "\n\n"
    prompts = [preamble + "Q: Which number follows 41?\nA:", preamble + "Q: Say hello.\nA:"]
    assert min(len(gemma_lm.tok_encode(p)) for p in prompts) > window
    ours, expected, _, _ = continuous_case(gemma_lm, prompts, ["\n"], 12, slots=2)
    assert ours == expected


@pytest.mark.model
def test_two_tasks_share_one_continuous_batch_and_each_gets_its_own_work(harness_lm):
    # two tasks, each with its own preamble (each held once), decoded in one batch of 3 slots that
    # rows of both fill; under a TaskMeter each task's generated and computed tokens are its own
    from harness.models.hf import HarnessLM
    from harness.models.metering import TaskMeter

    until, max_new = ["\n"], 24
    tasks = {
        "short_lines": (
            "Answer each question in one short line, then stop.\n\n" * 3,
            [
                "Q: What is 2 + 2?\nA:",
                "Q: Which colour is the sky on a clear day?\nA:",
                "Q: Count from one to ten.\nA:",
            ],
        ),
        "brief": (
            "You are a helpful assistant. Answer briefly.\n\n" * 3,
            [
                "Q: Name a large animal that lives in Africa and eats grass all day long.\nA:",
                "Q: Count from one to ten.\nA:",
            ],
        ),
    }
    reqs, refs = [], {}
    for task, (preamble, questions) in tasks.items():
        prompts = [preamble + q for q in questions]
        reqs += requests({"until": until, "max_gen_toks": max_new}, prompts, task=task)
        refs[task] = [(harness_lm.tok_encode(p), reference_generate(harness_lm, p, until, max_new)) for p in prompts]
    ours_lm = HarnessLM(loaded=harness_lm.loaded, gen_batch_size=3)
    with TaskMeter(ours_lm) as meter:
        ours = ours_lm.generate_until(reqs, disable_tqdm=True)
    eos = harness_lm.tok_decode(harness_lm.eot_token_id, skip_special_tokens=False)
    from lm_eval.models.utils import postprocess_generated_text

    expected = [
        postprocess_generated_text(harness_lm.tok_decode(out), until + [eos], None) for t in tasks for _, out in refs[t]
    ]
    assert ours == expected
    work = ours_lm.report().work
    assert work.max_batch_requests == 3
    assert len({len(out) for pairs in refs.values() for _, out in pairs}) > 2  # rows finish apart
    for task, pairs in refs.items():
        prompts = [p for p, _ in pairs]
        shared = len(os.path.commonprefix(prompts))
        assert shared >= 16  # the preamble is held, not each row's own
        # the preamble once, each row's prompt after it, then one token per step after the first
        own = sum(len(p) - shared + len(out) - 1 for p, out in pairs)
        assert meter.tasks[task].tokens_computed == shared + own, task
        assert meter.tasks[task].generated_tokens == sum(len(out) for _, out in pairs), task
        assert meter.tasks[task].prompt_tokens == sum(len(p) for p in prompts), task
        assert meter.tasks[task].requests == meter.tasks[task].requests_computed == len(pairs)
        assert meter.tasks[task].model_seconds > 0
    assert work.tokens_computed == sum(meter.tasks[t].tokens_computed for t in tasks)
