"""`harness ladder`: a task's strategies (prompting, retrieval, fine-tuning) run and set side by side."""

from __future__ import annotations

from pathlib import Path

import click

from harness.commands.options import (
    BATCH_SIZE_OPTION,
    DATA_DIR_OPTION,
    DEVICE_OPTION,
    DTYPE_OPTION,
    INCLUDE_PATH_OPTION,
    LIMIT_OPTION,
    MD_OUT_OPTION,
    SEED_OPTION,
    output_option,
    quiet_lm_eval_unless_verbose,
)


@click.command()
@click.option(
    "--task",
    "ladder_ref",
    required=True,
    help="A bundled ladder (samsum, squad) or a ladder YAML file: the rungs to run.",
)
@click.option("--model", "-m", default="smollm2-135m", show_default=True, help="Bundled alias, local path or hub id.")
@click.option(
    "--adapter",
    default=None,
    type=click.Path(),
    help="The PEFT adapter for the ladder's adapter rung (e.g. from `harness finetune`).",
)
@LIMIT_OPTION
@BATCH_SIZE_OPTION
@SEED_OPTION
@DATA_DIR_OPTION
@INCLUDE_PATH_OPTION
@output_option("Run store: every rung is saved there as a run.")
@DEVICE_OPTION
@DTYPE_OPTION
@click.option("--no-cache", is_flag=True, help="Compute every request again.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the ladder as HTML here.")
@MD_OUT_OPTION
def ladder(
    ladder_ref,
    model,
    adapter,
    limit,
    batch_size,
    seed,
    data_dir,
    include_path,
    output,
    device,
    dtype,
    no_cache,
    out,
    md_out,
):
    """Prompting, retrieval or fine-tuning? Run a task's strategies and compare them on one page."""
    from harness.api import make_spec
    from harness.ladder import load_ladder, run_ladder
    from harness.reports.ladder import ladder_markdown, ladder_rows, render_ladder
    from harness.store import RunStore

    spec = load_ladder(ladder_ref)
    if adapter is not None and not Path(adapter).exists():
        raise click.BadParameter(f"'{adapter}' does not exist", param_hint="--adapter")
    base = make_spec(
        model,
        (),
        limit=limit,
        batch_size=batch_size,
        seed=seed,
        device=device,
        dtype=dtype,
        data_dir=data_dir,
        include_paths=include_path,
    )
    store = RunStore(output)
    store.check_writable()
    quiet_lm_eval_unless_verbose()
    done = run_ladder(spec, base, store, adapter, use_cache=not no_cache, echo=click.echo)
    rows = ladder_rows([(d.rung.name, d.rung.task, d.run_dir, d.skipped) for d in done], spec.metric)
    text = ladder_markdown(f"{spec.name} · {model}", spec.description, rows)
    if md_out:
        Path(md_out).write_text(text, encoding="utf-8")
        click.echo(f"markdown -> {md_out}")
    else:
        click.echo(text)
    if out:
        click.echo(f"html -> {render_ladder(f'{spec.name} · {model}', spec.description, rows, out)}")


COMMANDS = (ladder,)
