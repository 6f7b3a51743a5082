"""PEFT adapters: load one onto a base model for evaluation, and train one (LoRA or prompt tuning).

Loading keeps the runner's fast paths: a LoRA/IA3-style adapter is injected into the base model's
own modules (or merged into its weights), so the runner calls the same transformers forward it
always does. Prompt-learning adapters (prompt tuning, prefix tuning) change the input sequence,
which the runner's shared-prefix KV cache cannot score exactly: they are refused with a pointer.

Training is a plain torch loop: loss on completion tokens only, checkpoints every N steps
(adapter + optimizer + scheduler + RNG + data position) written atomically, resumed by running
the same command again.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.hashing import file_sha256, json_sha256
from harness.provenance import installed_versions

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
CARD = "card.json"
CHECKPOINTS = "checkpoints"
STATE = "trainer_state.pt"
RUN_SETTINGS = "finetune.json"
CARD_LIBRARIES = ("harness", "torch", "transformers", "peft", "tokenizers", "lm_eval")  # in the card, in this order


class AdapterError(UserError):
    pass


# ---------------------------------------------------------------------------------------------- loading
def read_adapter(path: str | os.PathLike) -> dict[str, Any]:
    """The identity of a PEFT adapter folder (no model needed): path, peft type, file hashes."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise AdapterError(f"--adapter {path}: no such folder")
    if not folder.is_dir():
        raise AdapterError(f"--adapter {path}: not a folder (give the folder holding {ADAPTER_CONFIG})")
    config_file = folder / ADAPTER_CONFIG
    if not config_file.is_file():
        raise AdapterError(f"--adapter {path}: not a PEFT adapter (no {ADAPTER_CONFIG})")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        peft_type = config["peft_type"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AdapterError(f"--adapter {path}: unreadable {ADAPTER_CONFIG} ({exc})") from None
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise AdapterError(f"--adapter {path}: no adapter weights ({' or '.join(WEIGHT_FILES)})")
    config_sha, weights_sha = file_sha256(config_file), file_sha256(weights)
    identity = {
        "name": folder.resolve().name,
        "path": str(folder.resolve()),
        "peft_type": peft_type,
        "config_sha256": config_sha,
        "weights_file": weights.name,
        "weights_sha256": weights_sha,
        "sha256": json_sha256({"config": config_sha, "weights": weights_sha}),
    }
    card = folder / CARD
    if card.is_file():  # trained by `harness finetune`: it knows its base model
        try:
            identity["base_sha256"] = json.loads(card.read_text(encoding="utf-8"))["base_model"]["sha256"]
        except (ValueError, KeyError, TypeError):
            pass
    return identity


def attach_adapter(loaded, path: str | os.PathLike, merge: bool = False, in_place: bool = False):
    """A LoadedModel with the PEFT adapter at `path` applied (merged into the weights if `merge`);
    identity["adapter"] records it. The given model is left alone unless in_place."""
    from peft import PeftConfig, PeftModel

    from harness.models.catalog import LoadedModel

    adapter = read_adapter(path)
    base_sha = loaded.identity.get("sha256")
    if adapter.get("base_sha256") and base_sha and adapter["base_sha256"] != base_sha:
        raise AdapterError(f"--adapter {path}: trained on another base model (sha256 {adapter['base_sha256'][:12]}…), "
                           f"not on '{loaded.identity.get('name')}' ({base_sha[:12]}…)")
    try:
        config = PeftConfig.from_pretrained(adapter["path"])
    except (ValueError, TypeError, OSError) as exc:
        raise AdapterError(f"--adapter {path}: unreadable {ADAPTER_CONFIG} ({exc})") from None
    if config.is_prompt_learning:
        raise AdapterError(
            f"--adapter {path}: {config.peft_type.value} adds virtual tokens before every input, which the harness "
            f"runner cannot score exactly; evaluate it with lm-eval's hf model: "
            f"harness-lm-eval --model hf --model_args pretrained={loaded.identity.get('weights')},peft={adapter['path']}")
    model = loaded.model if in_place else copy.deepcopy(loaded.model)
    try:
        peft_model = PeftModel.from_pretrained(model, adapter["path"], is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        # a shape mismatch (RuntimeError) or target modules the model lacks (ValueError)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(f"--adapter {path}: does not fit model '{loaded.identity.get('name')}' "
                           f"(adapter for another base model?): {first[:300]}") from None
    # the runner calls the transformers model itself: a merged model, or the base model whose
    # modules peft replaced by adapter layers (the same forward PeftModel would run)
    model = peft_model.merge_and_unload() if merge else peft_model.get_base_model()
    model.eval()
    identity = dict(loaded.identity)
    identity["adapter"] = {**adapter, "merged": bool(merge)}
    identity["num_parameters"] = sum(p.numel() for p in model.parameters())
    return LoadedModel(model, loaded.tokenizer, identity)


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Example:
    prompt: str
    completion: str


@dataclass
class TrainData:
    examples: list[Example]
    source: dict[str, Any]  # where the examples came from, with a sha256 of their content


def read_jsonl_pairs(path: str | os.PathLike) -> TrainData:
    """OpenAI fine-tuning pairs: one {"prompt": ..., "completion": ...} object a line."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--data {path}: no such file")
    examples = []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise UserError(f"--data {path}: line {number} is not JSON ({exc})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) \
                    or not isinstance(row.get("completion"), str):
                raise UserError(f"--data {path}: line {number} needs string fields \"prompt\" and \"completion\"")
            if not row["completion"]:
                raise UserError(f"--data {path}: line {number} has an empty completion (nothing to learn)")
            examples.append(Example(row["prompt"], row["completion"]))
    if not examples:
        raise UserError(f"--data {path}: no examples (empty file)")
    return TrainData(examples, {"kind": "jsonl", "path": str(file.resolve()), "sha256": file_sha256(file)})


def task_pairs(task_name: str, split: str, data_dir: str | None = None,
               include_paths: tuple[str, ...] = ()) -> TrainData:
    """(zero-shot prompt, target_delimiter + target) per doc of a task's split: what evaluation scores."""
    from harness.adapters import task_hooks
    from harness.mirror import resolve_data_dir
    from harness.tasks import build_task_manager, load_tasks, resolve_tasks

    root = resolve_data_dir(data_dir)
    tm = build_task_manager(include_paths, root, hooks=task_hooks())
    selection = resolve_tasks(tm, [task_name], root)
    if not selection.names:
        why = "; ".join(selection.skipped.values()) or "no such task"
        raise UserError(f"--task {task_name}: {why}")
    from lm_eval.api.task import Task

    tasks = [t for t in load_tasks(tm, selection.names) if isinstance(t, Task)]
    if len(tasks) != 1:
        raise UserError(f"--task {task_name}: name one task, not a group")
    task = tasks[0]
    cfg = task.config
    # any split of the task's dataset (a fewshot_split too), through the task's process_docs
    available = sorted(getattr(task, "dataset", None) or {})
    if split not in available:
        raise UserError(f"--split {split}: task '{task_name}' has splits {', '.join(available) or 'none'}")
    docs = task.dataset[split]
    docs = list(cfg.process_docs(docs) if cfg.process_docs is not None else docs)
    if not docs:
        raise UserError(f"--task {task_name} --split {split}: no documents")
    examples = []
    for doc in docs:
        prompt = task.fewshot_context(doc, 0)
        target = task.doc_to_target(doc)
        if cfg.output_type == "multiple_choice":
            choices = task.doc_to_choice(doc)
            target = choices[target] if isinstance(target, int) else target
        elif isinstance(target, list):
            target = target[0]
        examples.append(Example(prompt, cfg.target_delimiter + str(target)))
    content = json_sha256([[e.prompt, e.completion] for e in examples])
    return TrainData(examples, {"kind": "task", "task": task.config.task, "split": split,
                                "data_dir": str(root) if root else None, "sha256": content})


def load_train_data(data: str | None, task: str | None, split: str = "validation", data_dir: str | None = None,
                    include_paths: tuple[str, ...] = ()) -> TrainData:
    """`--data FILE.jsonl` or `--task NAME --split SPLIT`: exactly one of them."""
    if bool(data) == bool(task):
        raise UserError("give training data: --data FILE.jsonl or --task NAME (one of them)")
    return read_jsonl_pairs(data) if data else task_pairs(task, split, data_dir, include_paths)


def encode_example(tokenizer, example: Example, max_length: int, add_eos: bool = True) -> tuple[list[int], list[int]]:
    """(input ids, labels) with labels -100 on the prompt. The prompt/completion split is lm-eval's
    (trailing spaces of the prompt move to the completion; whole string tokenised, then cut), so
    the completion tokens are the ones evaluation scores. Long prompts lose their oldest tokens."""
    prompt, completion = example.prompt, example.completion
    spaces = len(prompt) - len(prompt.rstrip())
    if spaces:
        prompt, completion = prompt[:-spaces], prompt[-spaces:] + completion
    whole = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    completion_ids = whole[len(prompt_ids):]
    if add_eos and tokenizer.eos_token_id is not None:
        completion_ids = completion_ids + [tokenizer.eos_token_id]
    completion_ids = completion_ids[:max_length]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) - (max_length - len(completion_ids))):] \
        if max_length > len(completion_ids) else []
    return prompt_ids + completion_ids, [-100] * len(prompt_ids) + completion_ids


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded input_ids, attention_mask and labels (-100 on padding) tensors."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    for row, (x, y) in enumerate(encoded):
        ids[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
        labels[row, : len(y)] = torch.tensor(y)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def split_holdout(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices): `holdout` is a fraction (< 1) or a count."""
    if holdout < 0:
        raise UserError("--holdout must be 0 or more (a fraction below 1, or a count)")
    k = int(holdout) if holdout >= 1 else (math.ceil(n * holdout) if holdout > 0 else 0)
    if k >= n:
        raise UserError(f"--holdout {holdout:g}: leaves no training examples out of {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[k:]), sorted(order[:k])


# ---------------------------------------------------------------------------------------------- training
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
        targets = "all-linear" if s.target_modules == "all-linear" else \
            [t.strip() for t in s.target_modules.split(",") if t.strip()]
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=s.lora_r, lora_alpha=s.lora_alpha,
                      lora_dropout=s.lora_dropout, target_modules=targets)


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    found = []
    if (out / CHECKPOINTS).is_dir():
        for p in (out / CHECKPOINTS).iterdir():
            if p.name.startswith("step-") and p.name[5:].isdigit() and (p / STATE).is_file():
                found.append((int(p.name[5:]), p))
    return sorted(found)


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def _save_checkpoint(out: Path, step: int, model, optimizer, scheduler, position: dict[str, Any],
                     history: list, extra: dict[str, Any], keep: int = 2) -> Path:
    """OUT/checkpoints/step-N, written to a temporary folder and renamed into place (atomic)."""
    import torch

    final = out / CHECKPOINTS / f"step-{step}"
    tmp = out / CHECKPOINTS / f".step-{step}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": _rng_state(), "position": position, "history": history, **extra}, tmp / STATE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in _checkpoints(out)[:-keep]:  # the last few are enough to resume
        shutil.rmtree(old, ignore_errors=True)
    return final


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


def length_grouped_order(lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """A seeded shuffle in which each batch holds examples of similar length (little padding):
    shuffle, sort within windows of 64 batches by length, cut into batches, shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 64
    batches = []
    for start in range(0, len(order), window):
        part = sorted(order[start:start + window], key=lambda i: -lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return [i for b in batches for i in b]


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


def run_finetune(data: TrainData, out: str | os.PathLike, settings: FinetuneSettings, progress: bool = True,
             say=print) -> FinetuneResult:
    """Train a PEFT adapter on data into `out`; running it again resumes from the last checkpoint."""
    import torch
    from peft import get_peft_model, set_peft_model_state_dict
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
            changed = sorted(k for k in set(before) | set(_settings_record(settings))
                             if before.get(k) != _settings_record(settings).get(k))
            raise UserError(f"--out {out}: holds a run with other settings ({', '.join(changed)}); "
                            f"use another --out or delete it")
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
    truncated = sum(len(tokenizer(e.prompt + e.completion, add_special_tokens=False)["input_ids"]) + 1
                    > settings.max_length for e in data.examples)
    if truncated:
        say(f"{truncated} of {len(encoded)} examples are longer than --max-length {settings.max_length}: "
            f"their prompts lose their oldest tokens")
    train = [encoded[i] for i in train_idx]
    held = [encoded[i] for i in held_idx]
    device = loaded.model.device
    held_batches = [{k: v.to(device) for k, v in collate(held[i:i + settings.batch_size], pad_id).items()}
                    for i in range(0, len(held), settings.batch_size)]

    model = get_peft_model(loaded.model, _peft_config(settings))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr)
    batches_per_epoch = math.ceil(len(train) / settings.batch_size)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / settings.grad_accum))
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, total_steps)

    step, position, history, resumed_from = 0, {"epoch": 0, "batch": 0}, [], None
    checkpoints = _checkpoints(out)
    for partial in (out / CHECKPOINTS).glob(".step-*") if (out / CHECKPOINTS).is_dir() else []:
        shutil.rmtree(partial, ignore_errors=True)  # a checkpoint a killed run was writing
    holdout_before = None
    if checkpoints:
        step, path = checkpoints[-1]
        state = torch.load(path / STATE, weights_only=False)
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        position, history = state["position"], state["history"]
        holdout_before = state.get("holdout_loss_before")
        _set_rng_state(state["rng"])
        resumed_from = step
        say(f"resuming from {path} (step {step} of {total_steps})")
    else:
        holdout_before = _mean_loss(model, held_batches)

    lengths = [len(ids) for ids, _ in train]

    def order_of(epoch: int) -> list[int]:
        return length_grouped_order(lengths, settings.batch_size, settings.seed * 1000003 + epoch)

    bar = tqdm(total=total_steps, initial=step, desc="finetune", unit="step", disable=not progress,
               dynamic_ncols=True)
    epoch, batch_no = position["epoch"], position["batch"]
    order = order_of(epoch)
    while step < total_steps:
        loss_sum, micro = 0.0, 0
        for _ in range(settings.grad_accum):
            if batch_no >= batches_per_epoch:
                epoch, batch_no = epoch + 1, 0
                order = order_of(epoch)
            rows = order[batch_no * settings.batch_size:(batch_no + 1) * settings.batch_size]
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
            _save_checkpoint(out, step, model, optimizer, scheduler, {"epoch": epoch, "batch": batch_no},
                             history, {"holdout_loss_before": holdout_before})
    bar.close()

    holdout_after = _mean_loss(model, held_batches)
    model.save_pretrained(out)  # adapter_config.json + adapter_model.safetensors: `harness run --adapter OUT`
    card = {
        "finished": True,
        "method": settings.method,
        "peft_type": model.peft_config["default"].peft_type.value,
        "base_model": {k: loaded.identity.get(k) for k in ("name", "sha256", "hub_id", "revision", "architecture")},
        "data": {**data.source, "examples": len(data.examples), "train": len(train), "holdout": len(held),
                 "truncated": truncated},
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


def loss_svg(history: list, width: int = 480, height: int = 200) -> str:
    """The training loss per step as a small self-contained SVG polyline."""
    pad = 30
    if not history:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"></svg>\n'
    steps = [s for s, _ in history]
    losses = [v for _, v in history]
    lo, hi = min(losses), max(losses)
    span_x = max(steps[-1] - steps[0], 1)
    span_y = (hi - lo) or 1.0
    points = " ".join(f"{pad + (s - steps[0]) / span_x * (width - 2 * pad):.1f},"
                      f"{height - pad - (v - lo) / span_y * (height - 2 * pad):.1f}" for s, v in history)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>\n'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>\n'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>\n'
            f'<text x="{pad}" y="{pad - 8}">loss {hi:.3f}</text>\n'
            f'<text x="{pad}" y="{height - 8}">step {steps[0]}: min {lo:.3f}</text>\n'
            f'<text x="{width - pad}" y="{height - 8}" text-anchor="end">step {steps[-1]}</text>\n'
            f'</svg>\n')


def card_markdown(card: dict[str, Any]) -> str:
    """OUT/README.md: the adapter card for people (card.json holds the same for programs)."""
    base, data, hp = card["base_model"], card["data"], card["hyperparameters"]
    source = data.get("path") or f"task {data.get('task')} split {data.get('split')}"

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"

    lines = [
        f"# {card['peft_type']} adapter for {base.get('name')}",
        "",
        f"- base model: `{base.get('name')}` sha256 `{base.get('sha256')}`",
        f"- data: {source}, sha256 `{data.get('sha256')}`; {data['train']} train / {data['holdout']} held out",
        f"- steps: {card['steps']} ({card['steps_per_epoch']} per epoch); trainable parameters "
        f"{card['trainable_parameters']:,}",
        f"- held-out loss: {fmt(card['holdout_loss_before'])} before, {fmt(card['holdout_loss'])} after",
        f"- wall time: {card['wall_seconds']} s; libraries: "
        + ", ".join(f"{k} {v}" for k, v in card["libraries"].items()),
        "",
        "## Hyperparameters",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in hp.items()],
        "",
        "## Training loss",
        "",
        "![training loss](loss.svg)",
        "",
        "step: loss " + ", ".join(f"{s}: {v:.4f}" for s, v in card["loss_curve"]),
        "",
        "Evaluate: `harness run --adapter THIS_FOLDER --model " + str(base.get("name")) + " --tasks ...`",
        "",
    ]
    return "\n".join(lines)
