"""Checkpoints of a fine-tuning run: OUT/checkpoints/step-N holding the adapter and trainer_state.pt
(optimizer, scheduler, RNG states, data position, loss history), each written whole then renamed."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
STATE = "trainer_state.pt"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, folder) of each complete checkpoint in OUT, oldest first."""
    found = []
    if (out / CHECKPOINTS).is_dir():
        for p in (out / CHECKPOINTS).iterdir():
            if p.name.startswith("step-") and p.name[5:].isdigit() and (p / STATE).is_file():
                found.append((int(p.name[5:]), p))
    return sorted(found)


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save_checkpoint(
    out: Path,
    step: int,
    model,
    optimizer,
    scheduler,
    position: dict[str, Any],
    history: list,
    extra: dict[str, Any],
    keep: int = 2,
) -> Path:
    """OUT/checkpoints/step-N, written to a temporary folder and renamed into place (atomic)."""
    import torch

    final = out / CHECKPOINTS / f"step-{step}"
    tmp = out / CHECKPOINTS / f".step-{step}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "position": position,
            "history": history,
            **extra,
        },
        tmp / STATE,
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in list_checkpoints(out)[:-keep]:  # the last few are enough to resume
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_partial(out: Path) -> None:
    """The checkpoint folders a killed run was writing."""
    for partial in (out / CHECKPOINTS).glob(".step-*") if (out / CHECKPOINTS).is_dir() else []:
        shutil.rmtree(partial, ignore_errors=True)


def restore_checkpoint(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Load checkpoint `path` into the PEFT model, optimizer and scheduler, restore the RNG states it
    saved, and return its state (step, position, history and the values saved with it)."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = torch.load(path / STATE, weights_only=False)
    set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state
