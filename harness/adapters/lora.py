"""PEFT adapters for evaluation: read an adapter folder's identity, and load it onto a base model.

Loading keeps the runner's fast paths: a LoRA/IA3-style adapter is injected into the base model's
own modules (or merged into its weights), so the runner calls the same transformers forward it
always does. Prompt-learning adapters (prompt tuning, prefix tuning) change the input sequence,
which the runner's shared-prefix KV cache cannot score exactly: they are refused with a pointer.
Training one is harness.finetune's.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.hashing import file_sha256, json_sha256

ADAPTER_CONFIG = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
CARD = "card.json"  # written by `harness finetune` beside the adapter: its base model, data, loss curve


class AdapterError(UserError):
    pass


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
            recorded = json.loads(card.read_text(encoding="utf-8"))
            identity["base_sha256"] = recorded["base_model"]["sha256"]
        except (ValueError, KeyError, TypeError):
            recorded = {}
        if isinstance(recorded.get("contamination"), dict):  # its training data's overlap with a test split
            identity["contamination"] = recorded["contamination"]
    return identity


def attach_adapter(loaded, path: str | os.PathLike, merge: bool = False, in_place: bool = False):
    """A LoadedModel with the PEFT adapter at `path` applied (merged into the weights if `merge`);
    identity["adapter"] records it. The given model is left alone unless in_place."""
    from peft import PeftConfig, PeftModel

    from harness.models.catalog import LoadedModel

    adapter = read_adapter(path)
    base_sha = loaded.identity.get("sha256")
    if adapter.get("base_sha256") and base_sha and adapter["base_sha256"] != base_sha:
        raise AdapterError(
            f"--adapter {path}: trained on another base model (sha256 {adapter['base_sha256'][:12]}…), "
            f"not on '{loaded.identity.get('name')}' ({base_sha[:12]}…)"
        )
    try:
        config = PeftConfig.from_pretrained(adapter["path"])
    except (ValueError, TypeError, OSError) as exc:
        raise AdapterError(f"--adapter {path}: unreadable {ADAPTER_CONFIG} ({exc})") from None
    if config.is_prompt_learning:
        raise AdapterError(
            f"--adapter {path}: {config.peft_type.value} adds virtual tokens before every input, which the harness "
            f"runner cannot score exactly; evaluate it with lm-eval's hf model: "
            f"harness-lm-eval --model hf --model_args pretrained={loaded.identity.get('weights')},peft={adapter['path']}"
        )
    model = loaded.model if in_place else copy.deepcopy(loaded.model)
    try:
        peft_model = PeftModel.from_pretrained(model, adapter["path"], is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        # a shape mismatch (RuntimeError) or target modules the model lacks (ValueError)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(
            f"--adapter {path}: does not fit model '{loaded.identity.get('name')}' "
            f"(adapter for another base model?): {first[:300]}"
        ) from None
    # the runner calls the transformers model itself: a merged model, or the base model whose
    # modules peft replaced by adapter layers (the same forward PeftModel would run)
    model = peft_model.merge_and_unload() if merge else peft_model.get_base_model()
    model.eval()
    identity = dict(loaded.identity)
    identity["adapter"] = {**adapter, "merged": bool(merge)}
    identity["num_parameters"] = sum(p.numel() for p in model.parameters())
    return LoadedModel(model, loaded.tokenizer, identity)
