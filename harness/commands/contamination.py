"""`harness contamination`: find tasks' evaluation documents in training or retrieval data."""

from __future__ import annotations

import click

from harness.commands.options import DATA_DIR_OPTION, INCLUDE_PATH_OPTION


@click.command()
@click.option(
    "--data",
    "sources",
    multiple=True,
    help="Training or retrieval data (repeatable): a JSONL or text file, a folder, a `harness index` folder, "
    "an adapter folder from `harness finetune`, or task:NAME:SPLIT.",
)
@click.option("--tasks", "-t", required=True, help="Comma-separated task names, groups or globs, as `harness run`.")
@click.option("--ngram", "-n", type=click.IntRange(min=1), default=13, show_default=True, help="Words per n-gram.")
@click.option(
    "--ignore-common",
    type=click.IntRange(min=1),
    default=None,
    help="Ignore n-grams found in more than this many evaluation documents (a prompt's fixed text: "
    "choices, answer line). Default: none ignored, as lm-eval's janitor.",
)
@click.option(
    "--check-prompts",
    is_flag=True,
    help="No --data: check each few-shot prompt's examples against the document the prompt asks about.",
)
@click.option("--num-fewshot", "-f", type=click.IntRange(min=1), default=None, help="For --check-prompts.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Few-shot seed, for --check-prompts.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Prompts per task, for --check-prompts.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the flags JSON here.")
@click.option("--md", "md_out", type=click.Path(dir_okay=False), default=None, help="Write the markdown report here.")
@DATA_DIR_OPTION
@INCLUDE_PATH_OPTION
def contamination(
    sources,
    tasks,
    ngram,
    ignore_common,
    check_prompts,
    num_fewshot,
    seed,
    limit,
    json_out,
    md_out,
    data_dir,
    include_path,
):
    """Evaluation documents found in training or retrieval data, by lm-eval's word n-grams, per task."""
    from rich.console import Console

    from harness.contamination.check import check_prompts as prompts_check
    from harness.contamination.check import run_check, save_report
    from harness.contamination.report import report_table
    from harness.errors import UserError

    patterns = [t.strip() for t in tasks.split(",") if t.strip()]
    if check_prompts:
        if sources:
            raise UserError("--check-prompts compares each prompt with itself: give no --data")
        report = prompts_check(patterns, num_fewshot, ngram, seed, limit, data_dir, tuple(include_path))
    else:
        if num_fewshot is not None or limit is not None:
            raise UserError("--num-fewshot and --limit go with --check-prompts")
        report = run_check(list(sources), patterns, ngram, data_dir, tuple(include_path), max_docs=ignore_common)
    save_report(report, json_out, md_out)
    console = Console()
    if not console.is_terminal:  # a log or a pipe: no 80-column wrap of task names
        console = Console(width=max(console.width, 160))
    console.print(report_table(report))
    if report.stats:
        click.echo("; ".join(f"{k}: {v}" for k, v in report.stats.items()), err=True)
    for task, why in report.skipped.items():
        click.echo(f"skipped {task}: {why}", err=True)
    if json_out:
        click.echo(f"{len(report.flagged)} flagged documents -> {json_out}", err=True)


COMMANDS = (contamination,)
