"""Commands over the run store: list runs, render the leaderboard, compare runs, gate and baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.commands.options import MD_OUT_OPTION, runs_option
from harness.errors import UserError

ALPHA = click.FloatRange(0, 1, min_open=True)
METRIC_OPTION = click.option(
    "--metric",
    default=None,
    help="Gate this metric instead of each task's main one, e.g. a worst case: acc_worst_robustness.",
)


@click.command()
@runs_option
@click.option("--model", default=None, help="Runs whose model name contains this.")
@click.option("--task", default=None, help="Runs with a task matching this glob (mmlu_*).")
@click.option("--spec", default=None, help="Runs whose spec hash starts with this.")
@click.option("--since", default=None, help="Runs started on or after this date (ISO, 2026-11-01).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="csv: one row per run and task; json: one object per run.",
)
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


@click.command()
@runs_option
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default="leaderboard.html",
    show_default=True,
    help="The HTML file to write (self-contained; a large store's samples go beside it in FILE.samples/).",
)
@click.option("--title", default="harness leaderboard", show_default=True)
def leaderboard(runs_dir, out, title):
    """Render stored runs as one offline HTML leaderboard: models x tasks, intervals, charts, samples."""
    from harness.reports.leaderboard import leaderboard_from_store, render_leaderboard

    board, samples = leaderboard_from_store(runs_dir)
    path = render_leaderboard(board, samples, out, title=title)
    click.echo(
        f"{len(board.rows)} models x {sum(t['top_level'] for t in board.tasks)} tasks from "
        f"{len(board.runs)} runs -> {path}"
    )


@click.command()
@click.argument("runs", nargs=-1, required=True)
@runs_option
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the comparison as HTML here.")
@MD_OUT_OPTION
@click.option("--alpha", type=ALPHA, default=0.05, show_default=True, help="Significance level.")
@click.option(
    "--exclude",
    type=click.Path(dir_okay=False),
    default=None,
    help="A flags JSON from `harness contamination --json`: each task's score on all and on the clean documents.",
)
def compare(runs, runs_dir, out, md_out, alpha, exclude):
    """Compare runs: the first (A) against each other one, per task, with paired tests and flipped samples."""
    from harness.reports.compare import compare_runs, comparison_markdown, render_comparison, run_titles
    from harness.store import find_run, read_record

    if exclude:
        if out:
            raise UserError("--out (the HTML page) is not made with --exclude; use --md")
        return _compare_clean(runs, runs_dir, md_out, exclude)
    if len(runs) < 2:
        raise UserError("harness compare needs at least two runs (A B [C...]), or one with --exclude")
    dirs = [find_run(r, runs_dir) for r in runs]
    comparisons = [compare_runs(dirs[0], d) for d in dirs[1:]]
    names = [d.name for d in dirs]
    text = comparison_markdown(names, comparisons, alpha)
    if md_out:
        Path(md_out).write_text(text, encoding="utf-8")
    else:
        click.echo(text)
    if out:
        titles = run_titles([read_record(d) for d in dirs])  # the page is titled by model and variant
        click.echo(
            f"comparison page: {render_comparison(names, comparisons, out, alpha, titles)}", err=bool(not md_out)
        )


def _compare_clean(runs, runs_dir, md_out, exclude) -> None:
    """`harness compare RUN [RUN2 ...] --exclude FLAGS.json`: all vs clean per run (against the first)."""
    from harness.contamination.report import read_flags
    from harness.reports.clean import clean_markdown, clean_scores
    from harness.store import find_run

    flags = read_flags(exclude)
    dirs = [find_run(r, runs_dir) for r in runs]
    parts = [clean_markdown(dirs[0].name, clean_scores(dirs[0], flags), exclude)]
    for d in dirs[1:]:
        parts.append(clean_markdown(d.name, clean_scores(d, flags, baseline=dirs[0]), exclude, dirs[0].name))
    text = "\n".join(parts)
    if md_out:
        Path(md_out).write_text(text, encoding="utf-8")
    else:
        click.echo(text)


@click.command()
@click.argument("candidate")
@click.option("--baseline", required=True, help="A baseline JSON (from `harness baseline`) or a run folder / id.")
@runs_option
@click.option(
    "--max-drop",
    "max_drops",
    multiple=True,
    default=("0",),
    show_default=True,
    help="Allowed drop in the metric's units: a number for every task, or TASK=NUMBER (repeatable).",
)
@click.option(
    "--alpha",
    type=ALPHA,
    default=0.05,
    show_default=True,
    help="A drop must also be significant at this level to fail.",
)
@click.option(
    "--summary",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="GITHUB_STEP_SUMMARY",
    help="Append the markdown summary here. [env: GITHUB_STEP_SUMMARY]",
)
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write JUnit XML here.")
@METRIC_OPTION
def check(candidate, baseline, runs_dir, max_drops, alpha, summary, junit, metric=None):
    """CI gate: exit 1 when a task's score drops beyond --max-drop, significantly, against the baseline."""
    from harness.reports.gate import check as run_check
    from harness.reports.gate import gate_junit, gate_markdown, load_baseline, parse_max_drops
    from harness.store import find_run

    default_drop, per_task = parse_max_drops(max_drops)
    base_path = Path(baseline)
    base = load_baseline(base_path if base_path.exists() else find_run(baseline, runs_dir), metric)
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


@click.command()
@click.argument("run")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The baseline JSON to write.")
@runs_option
@click.option("--summary-only", is_flag=True, help="Leave out per-document scores (then `check` cannot pair samples).")
@METRIC_OPTION
def baseline(run, out, runs_dir, summary_only, metric=None):
    """Write a run's scores as a small baseline JSON to commit for `harness check`."""
    from harness.reports.gate import write_baseline
    from harness.store import find_run

    written = write_baseline(find_run(run, runs_dir), Path(out), with_samples=not summary_only, metric=metric)
    click.echo(f"baseline of {len(written['tasks'])} tasks from {written['run_id']} -> {out}")


COMMANDS = (runs, leaderboard, compare, check, baseline)
