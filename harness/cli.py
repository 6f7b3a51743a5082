"""The `harness` command: parse, call one function, print, exit code.

The group, its error handling and `harness run` live here; the other commands live in
harness.commands (one module a job) and are registered below.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from harness.commands import catalog, contamination, finetune, index, ladder, reports
from harness.commands.options import (
    BATCH_SIZE_OPTION,
    DATA_DIR_OPTION,
    DEVICE_OPTION,
    DTYPE_OPTION,
    INCLUDE_PATH_OPTION,
    LIMIT_OPTION,
    NO_CACHE_OPTION,
    PERTURB_OPTION,
    SEED_OPTION,
    output_option,
    quiet_lm_eval_unless_verbose,
    served_options,
)
from harness.errors import UserError

EXIT_USAGE = 2
EXIT_ABORTED = 130


class HarnessGroup(click.Group):
    """A click group whose main() gives user errors one line and exit 2 (--debug: the traceback too),
    whether it runs as the console script or in-process (click.testing.CliRunner calls main())."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        extra.setdefault("obj", {})["argv"] = argv  # what `--num-processes` launches again
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(EXIT_ABORTED)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        except UserError as exc:
            if "--debug" in argv:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)  # --help and --version: click's exit code, 0


def main() -> None:
    """Entry point of the `harness` console script and `python -m harness`."""
    cli.main()


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks for user errors.")
@click.option("-v", "--verbose", is_flag=True, help="Show library logging and warnings (lm-eval, transformers).")
@click.version_option(package_name="harness")
def cli(debug: bool, verbose: bool) -> None:
    """Evaluate language models on lm-eval YAML tasks, offline, and keep every run on disk."""
    from harness.quiet import quiet_libraries

    quiet_libraries(verbose)


for _module in (catalog, reports, ladder, finetune, index, contamination):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


@cli.command()
@click.option(
    "--model",
    "-m",
    default="smollm2-135m",
    show_default=True,
    help="Alias from `harness models`, a local model folder or .gguf file, a hub id, or the base URL "
    "of an OpenAI-compatible server (http://HOST:PORT/v1).",
)
@click.option(
    "--tasks",
    "-t",
    required=True,
    help="Comma-separated task names, groups or globs, e.g. mmlu_anatomy,demo or 'mmlu_high_*'.",
)
@click.option("--num-fewshot", "-f", type=int, default=None, help="Few-shot examples (default: the task's).")
@LIMIT_OPTION
@BATCH_SIZE_OPTION
@SEED_OPTION
@click.option("--gen-kwargs", default=None, help="Generation settings, k=v,k=v or JSON, over the task's.")
@click.option("--apply-chat-template", is_flag=True, help="Wrap prompts in the model's chat template.")
@click.option("--system-instruction", default=None, help="System message prepended to every prompt.")
@DATA_DIR_OPTION
@INCLUDE_PATH_OPTION
@output_option("Folder that receives runs/<run-id>/.")
@DEVICE_OPTION
@DTYPE_OPTION
@click.option(
    "--compile",
    "compile_model",
    is_flag=True,
    help="torch.compile the model's forward pass (a one-time cost of minutes on CPU; same numbers).",
)
@click.option(
    "--bootstrap-iters",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for standard errors of non-mean metrics.",
)
@NO_CACHE_OPTION
@click.option(
    "--num-processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Data parallel: run under `accelerate launch` with this many processes (one per GPU; "
    "on a CPU, each with its share of the cores). Same results as one process.",
)
@click.option(
    "--adapter",
    type=click.Path(),
    default=None,
    help="A PEFT adapter folder (LoRA, IA3 ...; e.g. from `harness finetune`) applied to the model.",
)
@click.option("--merge-adapter", is_flag=True, help="Merge the adapter into the weights before evaluating.")
@served_options
@PERTURB_OPTION
def run(
    model,
    tasks,
    num_fewshot,
    limit,
    batch_size,
    seed,
    gen_kwargs,
    apply_chat_template,
    system_instruction,
    data_dir,
    include_path,
    output,
    device,
    dtype,
    compile_model,
    bootstrap_iters,
    no_cache,
    num_processes,
    adapter=None,
    merge_adapter=False,
    perturb=None,
    **served,
):
    """Evaluate a model on tasks and store the run (--model http://HOST:PORT/v1: a served model)."""
    if num_processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        sys.exit(_launch_processes(num_processes, click.get_current_context().obj["argv"]))
    from harness.api import make_spec, run_and_store

    # the spec and the store of harness.evaluate(): the command and the API cannot drift apart
    spec = make_spec(
        model,
        tasks,
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        seed=seed,
        gen_kwargs=gen_kwargs,
        apply_chat_template=apply_chat_template,
        system_instruction=system_instruction,
        data_dir=data_dir,
        include_paths=include_path,
        device=device,
        dtype=dtype,
        compile=compile_model,
        bootstrap_iters=bootstrap_iters,
        adapter=adapter,
        merge_adapter=merge_adapter,
        **served,
        perturb=perturb,
    )
    quiet_lm_eval_unless_verbose()
    stored = run_and_store(spec, output, use_cache=not no_cache)
    if stored is not None:  # None: not the main process of a data-parallel run
        _print_summary(stored)


def _launch_processes(n: int, argv: list[str]) -> int:
    """This same command (argv) under `accelerate launch` with n processes, without --num-processes; its exit code."""
    import subprocess

    import psutil
    import torch

    argv, args = list(argv), []
    while argv:
        arg = argv.pop(0)
        if arg == "--num-processes":
            argv.pop(0)
        elif not arg.startswith("--num-processes="):
            args.append(arg)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(n),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if not torch.cuda.is_available():  # each process its share of the cores, unless OMP_NUM_THREADS says
        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // n))
        launch += ["--num_cpu_threads_per_process", threads]
    elif torch.cuda.device_count() < n:
        raise UserError(f"--num-processes {n}: only {torch.cuda.device_count()} GPUs here (one process per GPU)")
    return subprocess.run([*launch, "-m", "harness", *args]).returncode


def _print_summary(stored) -> None:
    """The score table of a stored run, what was skipped or cut, the request cache's share, the folder."""
    from rich.console import Console

    from harness.reports.summary import summary_rows, summary_table

    results = stored.finished.results
    rows, record, work = summary_rows(results), results["harness"], stored.finished.env["runner"]
    identity = record["model"]
    console = Console()
    if not console.is_terminal:  # a log or a pipe: no 80-column wrap of task names
        console = Console(width=max(console.width, 160))
    adapter = identity.get("adapter")
    name = identity["name"] + (
        f" + adapter {adapter['name']}{' (merged)' if adapter['merged'] else ''}" if adapter else ""
    )
    console.print(summary_table(rows, f"{name}  ({identity['dtype']}, {identity['device']})"))
    if adapter and adapter.get("contamination"):  # recorded from the adapter's card
        from harness.reports.ladder import overlap_note

        console.print(f"adapter: {overlap_note(adapter['contamination'])}", markup=False)
    for name, why in record.get("skipped_tasks", {}).items():
        console.print(f"skipped {name}: {why}", markup=False)
    if record.get("truncated_requests"):
        console.print(
            f"{record['truncated_requests']:,} prompts were longer than the context window "
            f"({record['max_length']:,} tokens): their oldest tokens were cut, as lm-eval does",
            markup=False,
        )
    if work.get("requests_from_cache"):
        total = work["requests_from_cache"] + work["requests_computed"]
        lost = work.get("interrupted_in_flight", 0)
        console.print(
            f"{work['requests_from_cache']:,} of {total:,} requests from the request cache "
            f"({work['request_cache']}; --no-cache computes all)"
            + (f"; {lost:,} lost in flight by an interrupted run were computed again" if lost else ""),
            markup=False,
        )
    console.print(f"run stored in {stored.run_dir}")
