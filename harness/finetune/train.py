"""`harness finetune`: train a PEFT adapter (LoRA or prompt tuning) with a plain torch loop.

Loss on completion tokens only, checkpoints every N steps (adapter + optimizer + scheduler + RNG +
data position) written atomically, resumed by running the same command again; the finished
folder holds the adapter `harness run --adapter` loads, card.json, README.md and loss.svg.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.adapters.lora import CARD
from harness.errors import UserError
from harness.finetune.card import card_markdown, loss_svg
from harness.finetune.checkpoints import list_checkpoints, remove_partial, restore_checkpoint, save_checkpoint
from harness.finetune.data import TrainData, collate, encode_example, length_grouped_order, split_holdout
from harness.provenance import installed_versions

RUN_SETTINGS = "finetune.json"
CARD_LIBRARIES = ("harness", "torch", "transformers", "peft", "tokenizers", "lm_eval")  # in the card, in this order


@dataclass
class FinetuneSettings:
    model: str = "smollm2-135m"
    method: str = "lora"  # or "prompt-tuning"
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: str | None = None  # comma-separated, or all-linear; None: peft's default for the model
    num_virtual_tokens: int = 20
    max_length: int = 512
    seed: int = 0
    holdout: float = 0.05
    save_every: int = 50
    warmup_steps: int = 0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class FinetuneResult:
    out: Path
    resumed_from: int | None
    already_finished: bool
    card: dict[str, Any]


def _check_settings(s: FinetuneSettings) -> None:
    if s.method not in ("lora", "prompt-tuning"):
        raise UserError(f"--method {s.method}: use lora or prompt-tuning")
    for name in ("batch_size", "grad_accum", "max_length", "save_every", "lora_r", "num_virtual_tokens"):
        if getattr(s, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if s.max_steps is not None and s.max_steps < 1:
        raise UserError("--max-steps must be at least 1")
    if s.epochs <= 0 or s.lr <= 0:
        raise UserError("--epochs and --lr must be positive")


def _peft_config(s: FinetuneSettings):
    from peft import LoraConfig, PromptTuningConfig, TaskType

    if s.method == "prompt-tuning":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=s.num_virtual_tokens)
    targets = None
    if s.target_modules:
        targets = (
            "all-linear"
            if s.target_modules == "all-linear"
            else [t.strip() for t in s.target_modules.split(",") if t.strip()]
        )
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=s.lora_r,
        lora_alpha=s.lora_alpha,
        lora_dropout=s.lora_dropout,
        target_modules=targets,
    )


def completion_loss(model, batch):
    """Mean cross-entropy over the labelled (completion) tokens of a batch. For adapters that keep
    the input as it is (LoRA...), the LM head runs on those positions only: completions are short
    next to their prompts, and a 49k-word head over every position is a fifth of the work."""
    import torch.nn.functional as F

    if model.peft_config["default"].is_prompt_learning:
        return model(**batch).loss  # virtual tokens go in front: peft's forward lays them out
    inner = model.get_base_model()
    decoder, head = inner.get_decoder(), inner.get_output_embeddings()
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    logits = head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, labels[keep])


def _mean_loss(model, batches) -> float | None:
    """Token-weighted mean cross-entropy over the completion tokens of batches."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for batch in batches:
            n = int((batch["labels"][:, 1:] != -100).sum())
            if n:
                total += float(completion_loss(model, batch)) * n
                count += n
    model.train()
    return total / count if count else None


def run_finetune(
    data: TrainData, out: str | os.PathLike, settings: FinetuneSettings, progress: bool = True, say=print
) -> FinetuneResult:
    """Train a PEFT adapter on data into `out`; running it again resumes from the last checkpoint."""
    import torch
    from peft import get_peft_model
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from harness.models.catalog import load_model

    _check_settings(settings)
    train_idx, held_idx = split_holdout(len(data.examples), settings.holdout, settings.seed)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    settings = FinetuneSettings(**{**asdict(settings), "data": data.source})
    recorded = out / RUN_SETTINGS
    if recorded.is_file():
        before = json.loads(recorded.read_text(encoding="utf-8"))
        if before != _settings_record(settings):
            changed = sorted(
                k
                for k in set(before) | set(_settings_record(settings))
                if before.get(k) != _settings_record(settings).get(k)
            )
            raise UserError(
                f"--out {out}: holds a run with other settings ({', '.join(changed)}); use another --out or delete it"
            )
        if (out / CARD).is_file():
            card = json.loads((out / CARD).read_text(encoding="utf-8"))
            return FinetuneResult(out, None, True, card)
    elif out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out}: not empty and not a `harness finetune` output; use another folder")
    out.mkdir(parents=True, exist_ok=True)
    _write_json(recorded, _settings_record(settings))

    started = time.time()
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    loaded = load_model(settings.model, device=None, dtype="float32")
    tokenizer = loaded.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode_example(tokenizer, e, settings.max_length) for e in data.examples]
    truncated = sum(
        len(tokenizer(e.prompt + e.completion, add_special_tokens=False)["input_ids"]) + 1 > settings.max_length
        for e in data.examples
    )
    if truncated:
        say(
            f"{truncated} of {len(encoded)} examples are longer than --max-length {settings.max_length}: "
            f"their prompts lose their oldest tokens"
        )
    train = [encoded[i] for i in train_idx]
    held = [encoded[i] for i in held_idx]
    device = loaded.model.device
    held_batches = [
        {k: v.to(device) for k, v in collate(held[i : i + settings.batch_size], pad_id).items()}
        for i in range(0, len(held), settings.batch_size)
    ]

    model = get_peft_model(loaded.model, _peft_config(settings))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr)
    batches_per_epoch = math.ceil(len(train) / settings.batch_size)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / settings.grad_accum))
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, total_steps)

    step, position, history, resumed_from = 0, {"epoch": 0, "batch": 0}, [], None
    checkpoints = list_checkpoints(out)
    remove_partial(out)
    holdout_before = None
    if checkpoints:
        step, path = checkpoints[-1]
        state = restore_checkpoint(path, model, optimizer, scheduler)
        position, history = state["position"], state["history"]
        holdout_before = state.get("holdout_loss_before")
        resumed_from = step
        say(f"resuming from {path} (step {step} of {total_steps})")
    else:
        holdout_before = _mean_loss(model, held_batches)

    lengths = [len(ids) for ids, _ in train]

    def order_of(epoch: int) -> list[int]:
        return length_grouped_order(lengths, settings.batch_size, settings.seed * 1000003 + epoch)

    bar = tqdm(total=total_steps, initial=step, desc="finetune", unit="step", disable=not progress, dynamic_ncols=True)
    epoch, batch_no = position["epoch"], position["batch"]
    order = order_of(epoch)
    while step < total_steps:
        loss_sum, micro = 0.0, 0
        for _ in range(settings.grad_accum):
            if batch_no >= batches_per_epoch:
                epoch, batch_no = epoch + 1, 0
                order = order_of(epoch)
            rows = order[batch_no * settings.batch_size : (batch_no + 1) * settings.batch_size]
            batch_no += 1
            batch = {k: v.to(device) for k, v in collate([train[i] for i in rows], pad_id).items()}
            loss = completion_loss(model, batch)
            (loss / settings.grad_accum).backward()
            loss_sum += loss.item()
            micro += 1
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        history.append([step, round(loss_sum / micro, 6)])
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / micro:.4f}", epoch=f"{step / steps_per_epoch:.2f}")
        if step % settings.save_every == 0 or step == total_steps:
            # values known before training (held-out loss before) ride along in every checkpoint
            save_checkpoint(
                out,
                step,
                model,
                optimizer,
                scheduler,
                {"epoch": epoch, "batch": batch_no},
                history,
                {"holdout_loss_before": holdout_before},
            )
    bar.close()

    holdout_after = _mean_loss(model, held_batches)
    model.save_pretrained(out)  # adapter_config.json + adapter_model.safetensors: `harness run --adapter OUT`
    card = {
        "finished": True,
        "method": settings.method,
        "peft_type": model.peft_config["default"].peft_type.value,
        "base_model": {k: loaded.identity.get(k) for k in ("name", "sha256", "hub_id", "revision", "architecture")},
        "data": {
            **data.source,
            "examples": len(data.examples),
            "train": len(train),
            "holdout": len(held),
            "truncated": truncated,
        },
        "hyperparameters": {k: v for k, v in asdict(settings).items() if k not in ("data", "model")},
        "steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "trainable_parameters": sum(p.numel() for p in params),
        "loss_curve": history,
        "holdout_loss_before": holdout_before,
        "holdout_loss": holdout_after,
        "wall_seconds": round(time.time() - started, 2),
        "resumed_from_step": resumed_from,
        "libraries": installed_versions(CARD_LIBRARIES),
        "torch_threads": torch.get_num_threads(),
    }
    if data.contamination is not None:  # `--task`: the pairs' overlap with the evaluated split
        card["contamination"] = data.contamination
    (out / "loss.svg").write_text(loss_svg(history), encoding="utf-8")
    (out / "README.md").write_text(card_markdown(card), encoding="utf-8")
    _write_json(out / CARD, card)  # last: its presence says the run finished
    return FinetuneResult(out, resumed_from, False, card)


def _settings_record(settings: FinetuneSettings) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(settings)))


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    os.replace(tmp, path)
