"""`harness finetune`: train a PEFT adapter (LoRA or prompt tuning) for `harness run --adapter`."""

from __future__ import annotations

import click

from harness.commands.options import DATA_DIR_OPTION, INCLUDE_PATH_OPTION


@click.command()
@click.option("--data", type=click.Path(), default=None, help='JSONL of {"prompt", "completion"} pairs.')
@click.option("--task", default=None, help="Or a task: prompt = its zero-shot prompt, completion = its target.")
@click.option("--split", default="validation", show_default=True, help="The task's split to train on.")
@click.option(
    "--allow-eval-split",
    is_flag=True,
    help="Train on the split the task is evaluated on (refused by default: the adapter would see its test).",
)
@DATA_DIR_OPTION
@INCLUDE_PATH_OPTION
@click.option(
    "--model", "-m", default="smollm2-135m", show_default=True, help="Base model: alias, local path or hub id."
)
@click.option("--out", required=True, type=click.Path(), help="Output folder: adapter, card, checkpoints/.")
@click.option("--method", type=click.Choice(["lora", "prompt-tuning"]), default="lora", show_default=True)
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Optimizer steps (overrides --epochs).")
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True, help="Batches per optimizer step.")
@click.option("--lora-r", type=int, default=8, show_default=True)
@click.option("--lora-alpha", type=int, default=16, show_default=True)
@click.option("--lora-dropout", type=float, default=0.05, show_default=True)
@click.option(
    "--target-modules",
    default=None,
    help="Comma-separated module names or all-linear "
    "(default: peft's choice for the architecture, q_proj,v_proj for Llama).",
)
@click.option("--num-virtual-tokens", type=int, default=20, show_default=True, help="For --method prompt-tuning.")
@click.option("--max-length", type=int, default=512, show_default=True, help="Tokens per example (prompt cut first).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--holdout",
    type=float,
    default=0.05,
    show_default=True,
    help="Held-out examples for the eval loss: a fraction below 1, or a count.",
)
@click.option("--save-every", type=int, default=50, show_default=True, help="Checkpoint every N steps.")
def finetune(
    data,
    task,
    split,
    allow_eval_split,
    data_dir,
    include_path,
    model,
    out,
    method,
    epochs,
    max_steps,
    lr,
    batch_size,
    grad_accum,
    lora_r,
    lora_alpha,
    lora_dropout,
    target_modules,
    num_virtual_tokens,
    max_length,
    seed,
    holdout,
    save_every,
):
    """Train a PEFT adapter (LoRA or prompt tuning); run it again to resume from its last checkpoint."""
    from harness.finetune import FinetuneSettings, load_train_data, run_finetune

    train_data = load_train_data(data, task, split, data_dir, tuple(include_path), allow_eval_split)
    overlap = train_data.contamination
    if overlap is not None:
        click.echo(
            f"overlap with {overlap['task']} {overlap['split']} (what it is evaluated on): "
            f"{overlap['flagged']} of {overlap['documents']} documents; written into the card",
            err=True,
        )
    settings = FinetuneSettings(
        model=model,
        method=method,
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        num_virtual_tokens=num_virtual_tokens,
        max_length=max_length,
        seed=seed,
        holdout=holdout,
        save_every=save_every,
    )
    result = run_finetune(train_data, out, settings, say=lambda line: click.echo(line, err=True))
    card = result.card
    if result.already_finished:
        click.echo(
            f"already finished: {result.out} (held-out loss {card.get('holdout_loss')}); "
            f"use another --out to train again"
        )
        return
    click.echo(
        f"{card['steps']} steps in {card['wall_seconds']} s; held-out loss "
        f"{card['holdout_loss_before']} -> {card['holdout_loss']}; adapter in {result.out} "
        f"(harness run --adapter {result.out} ...)"
    )


COMMANDS = (finetune,)
