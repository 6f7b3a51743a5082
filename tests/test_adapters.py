"""PEFT adapters: evaluation against lm-eval's hf backend with peft=, loss masking, resumable training."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import harness as cli
from helpers import task_instances

REPO = Path(__file__).resolve().parents[1]
ABS_TOL = 2e-3  # float32 batched on CPU, as in test_runner.py


def harness(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )


def write_pairs(path: Path, n: int = 16) -> Path:
    rows = [
        {"prompt": f"Question: What is {a} plus {b}?\nAnswer:", "completion": f" {a + b}"}
        for a in range(4)
        for b in range(4)
    ][:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, smollm2_weights):
    """A LoRA adapter on the converted SmolLM2 weights whose B matrices are not zero (peft's
    init_lora_weights=False), so it changes the model's outputs."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_pretrained(smollm2_weights, dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    out = tmp_path_factory.mktemp("adapters") / "capitals-lora"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def base_loaded(smollm2_weights):
    from harness.models.catalog import load_model

    return load_model("smollm2-135m", device="cpu", dtype="float32")


def assert_same(ours, ref):
    assert len(ours) == len(ref)
    for (ll, greedy), (ll_ref, greedy_ref) in zip(ours, ref):
        assert math.isclose(ll, ll_ref, rel_tol=1e-4, abs_tol=ABS_TOL), (ll, ll_ref)
        assert greedy == greedy_ref


@pytest.fixture(scope="module")
def reference_peft_lm(lora_dir, smollm2_weights):
    """lm-eval's own hf backend loading the adapter itself (peft=) on the same base weights."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(smollm2_weights), peft=str(lora_dir), device="cpu", dtype="float32", batch_size=4)


@pytest.mark.model
def test_adapter_loglikelihoods_match_lm_eval_hf_with_peft(lora_dir, base_loaded, reference_peft_lm):
    from harness.adapters.lora import attach_adapter
    from harness.models.hf import HarnessLM

    requests = task_instances("demo_capitals", num_fewshot=0, limit=12)
    reference = reference_peft_lm.loglikelihood(requests)
    for merge in (False, True):
        adapted = attach_adapter(base_loaded, lora_dir, merge=merge)
        assert adapted.identity["adapter"]["merged"] is merge
        assert_same(HarnessLM(loaded=adapted, batch_size=4).loglikelihood(requests), reference)
    # and the adapter matters: the base model's numbers are not these
    base = HarnessLM(loaded=base_loaded, batch_size=4).loglikelihood(requests)
    assert max(abs(a[0] - b[0]) for a, b in zip(base, reference)) > 0.05


@pytest.mark.model
def test_run_with_adapter_has_its_own_identity_hash_cache_and_leaderboard_row(
    lora_dir, base_loaded, tmp_path, reference_peft_lm
):
    import lm_eval

    from harness.engine import run_evaluation
    from harness.reports.leaderboard import build_leaderboard
    from harness.spec import RunSpec
    from harness.store import RunStore
    from harness.tasks import build_task_manager, load_tasks

    cache = tmp_path / "requests.sqlite"
    store = RunStore(tmp_path / "runs")
    spec = RunSpec(model="smollm2-135m", tasks=("demo_capitals",), limit=12, device="cpu", bootstrap_iters=0)
    base = run_evaluation(spec, loaded=base_loaded, request_cache=cache)
    adapted = run_evaluation(
        RunSpec(**{**spec.__dict__, "adapter": str(lora_dir)}), loaded=base_loaded, request_cache=cache
    )
    assert "adapter" not in base_loaded.identity  # the caller's model is left as it was
    adapter = adapted.results["harness"]["model"]["adapter"]
    assert adapter["peft_type"] == "LORA" and adapter["merged"] is False and adapter["path"] == str(lora_dir)
    assert len(adapter["weights_sha256"]) == 64 and len(adapter["config_sha256"]) == 64
    assert adapted.spec_sha256 != base.spec_sha256
    # the base run filled the cache; the adapter run must not read the base's results from it
    assert adapted.env["runner"]["requests_from_cache"] == 0
    # same accuracy as lm-eval's own evaluator on its hf model with peft=
    tm = build_task_manager()
    ref = lm_eval.simple_evaluate(
        model=reference_peft_lm, tasks=load_tasks(tm, ["demo_capitals"]), task_manager=tm, limit=12, bootstrap_iters=0
    )
    for metric in ("acc,none", "acc_norm,none"):
        assert adapted.results["results"]["demo_capitals"][metric] == ref["results"]["demo_capitals"][metric]
    board = build_leaderboard([store.save(base), store.save(adapted)])
    assert sorted(r.label for r in board.rows) == ["smollm2-135m", "smollm2-135m (capitals-lora)"]


def test_labels_are_minus_100_exactly_on_the_prompt(smollm2_weights):
    import transformers

    from harness.finetune import Example, collate, encode_example, task_pairs

    tok = transformers.AutoTokenizer.from_pretrained(smollm2_weights)
    data = task_pairs("demo_capitals", "test")
    assert data.examples[0].prompt == "Question: What is the capital of France?\nAnswer:"
    assert data.examples[0].completion == " Paris"
    examples = data.examples[:3] + [Example("Summarize: a b c ", "short summary")]  # trailing space moves
    encoded = [encode_example(tok, e, max_length=512) for e in examples]
    for e, (ids, labels) in zip(examples, encoded):
        prompt_ids = tok(e.prompt.rstrip(" "), add_special_tokens=False)["input_ids"]
        n = len(prompt_ids)
        assert ids[:n] == prompt_ids
        assert labels[:n] == [-100] * n
        assert labels[n:] == ids[n:] and -100 not in labels[n:]
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[n:-1]) == e.prompt[len(e.prompt.rstrip(" ")) :] + e.completion
    batch = collate(encoded, pad_id=tok.eos_token_id)
    for row, (ids, labels) in enumerate(encoded):
        assert batch["labels"][row].tolist() == labels + [-100] * (batch["labels"].shape[1] - len(labels))
        assert batch["attention_mask"][row].sum() == len(ids)
    # too long: the prompt loses its oldest tokens, the completion is kept
    ids, labels = encode_example(tok, Example(("word " * 100).strip(), " end"), max_length=16)
    assert len(ids) == 16 and labels[-2:] == ids[-2:] and labels.count(-100) == 16 - len(tok(" end")["input_ids"]) - 1


@pytest.mark.model
def test_finetune_resumes_after_sigkill_to_the_same_weights(tmp_path, smollm2_weights):
    from safetensors.torch import load_file

    data = write_pairs(tmp_path / "pairs.jsonl")
    args = [
        "finetune",
        "--data",
        str(data),
        "--max-steps",
        "4",
        "--batch-size",
        "4",
        "--save-every",
        "2",
        "--lr",
        "1e-3",
        "--holdout",
        "2",
        "--max-length",
        "64",
    ]
    whole = harness(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    deadline = time.time() + 240
    while not (out / "checkpoints" / "step-2").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (out / "card.json").exists():
        pytest.skip("the run finished before it could be killed")
    assert (out / "checkpoints" / "step-2").is_dir()
    resumed = harness(*args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    assert "(step 2 of 4)" in resumed.stderr

    a = load_file(tmp_path / "whole" / "adapter_model.safetensors")
    b = load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() <= 1e-6, key
    card_a = json.loads((tmp_path / "whole" / "card.json").read_text())
    card_b = json.loads((out / "card.json").read_text())
    assert [v for _, v in card_a["loss_curve"]] == pytest.approx([v for _, v in card_b["loss_curve"]], abs=1e-5)
    assert card_a["holdout_loss"] == pytest.approx(card_b["holdout_loss"], abs=1e-5)
    assert card_b["holdout_loss"] < card_b["holdout_loss_before"]
    assert card_b["data"]["holdout"] == 2 and card_b["base_model"]["sha256"]
    assert "<polyline" in (out / "loss.svg").read_text() and "held-out loss" in (out / "README.md").read_text()

    again = harness(*args, "--out", str(out))
    assert again.returncode == 0 and "already finished" in again.stdout
    # the trained adapter is loadable for evaluation and knows its base
    from harness.adapters.lora import read_adapter

    assert read_adapter(out)["base_sha256"] == card_b["base_model"]["sha256"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty.jsonl").write_text("\n")
    (root / "badline.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": \n')
    (root / "nokeys.jsonl").write_text('{"text": "a"}\n')
    (root / "afile").write_text("x")
    write_pairs(root / "ok.jsonl")
    return root


@pytest.mark.parametrize(
    "case",
    [
        ("finetune --out {r}/o1", "give training data"),
        ("finetune --data {r}/missing.jsonl --out {r}/o2", "no such file"),
        ("finetune --data {r}/empty.jsonl --out {r}/o3", "no examples"),
        ("finetune --data {r}/badline.jsonl --out {r}/o4", "line 2 is not JSON"),
        ("finetune --data {r}/nokeys.jsonl --out {r}/o5", "line 1 needs string fields"),
        ("finetune --task no_such_task --out {r}/o6", "no_such_task"),
        ("finetune --data {r}/ok.jsonl --out {r}/afile", "is a file"),
        ("finetune --data {r}/ok.jsonl --holdout 16 --out {r}/o7", "leaves no training examples"),
        ("run -t demo_capitals --adapter {r}/missing", "no such folder"),
        ("run -t demo_capitals --adapter {r}", "not a PEFT adapter"),
    ],
    ids=[
        "no-data",
        "missing-file",
        "empty",
        "bad-line",
        "no-keys",
        "unknown-task",
        "out-is-file",
        "holdout-all",
        "adapter-missing",
        "not-an-adapter",
    ],
)
def test_bad_input_gets_one_line_and_exit_2(case, bad_inputs):
    args, message = case
    result = cli(*args.format(r=bad_inputs).split())
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


@pytest.mark.model
def test_adapter_for_another_base_and_prompt_tuning_are_refused(tmp_path, base_loaded):
    import torch
    import transformers
    from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model

    from harness.adapters.lora import AdapterError, attach_adapter

    other = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=base_loaded.model.config.vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
        )
    )
    get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "other")
    with pytest.raises(AdapterError, match="does not fit model 'smollm2-135m'"):
        attach_adapter(base_loaded, tmp_path / "other")
    torch.manual_seed(0)
    prompt = get_peft_model(
        transformers.LlamaForCausalLM(other.config),
        PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4),
    )
    prompt.save_pretrained(tmp_path / "prompt")
    with pytest.raises(AdapterError, match="PROMPT_TUNING adds virtual tokens"):
        attach_adapter(base_loaded, tmp_path / "prompt")


@pytest.mark.model
def test_completion_only_head_gives_transformers_loss(lora_dir, smollm2_weights):
    """The training loss runs the LM head on completion positions only: same loss as transformers'
    own (labels=) over all positions."""
    import torch
    import transformers
    from peft import PeftModel

    from harness.finetune import collate, completion_loss, encode_example, task_pairs

    tok = transformers.AutoTokenizer.from_pretrained(smollm2_weights)
    base = transformers.AutoModelForCausalLM.from_pretrained(smollm2_weights, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, lora_dir)
    batch = collate(
        [encode_example(tok, e, 512) for e in task_pairs("demo_capitals", "test").examples[:4]], tok.eos_token_id
    )
    with torch.no_grad():
        assert float(completion_loss(model, batch)) == pytest.approx(float(model(**batch).loss), abs=1e-5)


@pytest.mark.model
def test_prompt_tuning_trains_and_is_refused_by_the_runner(tmp_path, base_loaded):
    from harness.adapters.lora import AdapterError, attach_adapter
    from harness.finetune import FinetuneSettings, read_jsonl_pairs, run_finetune

    data = read_jsonl_pairs(write_pairs(tmp_path / "pairs.jsonl", 8))
    settings = FinetuneSettings(
        method="prompt-tuning",
        max_steps=2,
        batch_size=4,
        holdout=2,
        lr=1e-2,
        num_virtual_tokens=4,
        save_every=1,
        max_length=64,
    )
    result = run_finetune(data, tmp_path / "pt", settings, progress=False, say=lambda line: None)
    assert result.card["peft_type"] == "PROMPT_TUNING" and len(result.card["loss_curve"]) == 2
    with pytest.raises(AdapterError, match="PROMPT_TUNING adds virtual tokens"):
        attach_adapter(base_loaded, tmp_path / "pt")
