"""Options several commands share, each defined once (name, type, environment variable, help)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(),
    default=None,
    envvar="HARNESS_DATA_DIR",
    help="Local data mirror; no network is used for data it holds. [env: HARNESS_DATA_DIR]",
)
INCLUDE_PATH_OPTION = click.option(
    "--include-path", multiple=True, type=click.Path(), help="Extra folder of task YAMLs (repeatable)."
)
DEVICE_OPTION = click.option(
    "--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present, else cpu)."
)
DTYPE_OPTION = click.option(
    "--dtype", default=None, help="float32, bfloat16, float16 (default: bfloat16 on cuda, float32 on cpu)."
)
LIMIT_OPTION = click.option(
    "--limit", "-l", type=float, default=None, help="Docs per task: a count, or a fraction below 1."
)
SEED_OPTION = click.option(
    "--seed",
    type=int,
    default=None,
    help="One seed for python, numpy, torch and few-shot sampling (default: lm-eval's 0/1234/1234/1234).",
)
BATCH_SIZE_OPTION = click.option(
    "--batch-size",
    "-b",
    default="8",
    show_default=True,
    help="Rows per scoring pass, or 'auto': the most that fit in memory (halved on out-of-memory); generation sizes its own by memory.",
)
NO_CACHE_OPTION = click.option(
    "--no-cache",
    is_flag=True,
    help="Compute every request, neither reading nor writing the request cache "
    "($HARNESS_REQUEST_CACHE, default ~/.cache/harness/requests.sqlite).",
)
PERTURB_OPTION = click.option(
    "--perturb",
    default=None,
    help="HELM perturbations of the input, comma-separated: robustness, fairness, or by name (mild_mix, "
    "gender_pronouns, dialect, ...); stores each metric's worst case as METRIC_worst_NAME.",
)
MD_OUT_OPTION = click.option(
    "--md", "md_out", type=click.Path(dir_okay=False), default=None, help="Write the markdown here (default: print it)."
)


def output_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--output`: the run store a command writes runs into."""
    return click.option(
        "--output",
        "-o",
        type=click.Path(),
        default="runs",
        show_default=True,
        envvar="HARNESS_RUNS_DIR",
        help=f"{help} [env: HARNESS_RUNS_DIR]",
    )


def runs_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """`--runs`: the run store a command reads, passed as `runs_dir`. `--runs-dir`, its older name in
    compare, check and baseline, still works (hidden from --help)."""

    @functools.wraps(f)
    def merged(*args: Any, runs_dir: str, runs_dir_alias: str | None, **kwargs: Any) -> Any:
        if runs_dir_alias is not None:
            if click.get_current_context().get_parameter_source("runs_dir") is ParameterSource.COMMANDLINE:
                raise click.UsageError("give --runs only (--runs-dir is its older name)")
            runs_dir = runs_dir_alias
        return f(*args, runs_dir=runs_dir, **kwargs)

    merged = click.option("--runs-dir", "runs_dir_alias", type=click.Path(), default=None, hidden=True)(merged)
    return click.option(
        "--runs",
        "runs_dir",
        type=click.Path(),
        default="runs",
        show_default=True,
        envvar="HARNESS_RUNS_DIR",
        help="Run store folder; run ids are looked up there. [env: HARNESS_RUNS_DIR]",
    )(merged)


def quiet_lm_eval_unless_verbose() -> None:
    """Before an evaluation: lm-eval's own progress bars off, unless `harness -v`."""
    if not click.get_current_context().find_root().params.get("verbose"):
        from harness.quiet import quiet_lm_eval_progress

        quiet_lm_eval_progress()


def served_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a served model (`--model http://HOST:PORT/v1`), passed under RunSpec's names."""
    for option in reversed(
        [
            click.option(
                "--api",
                type=click.Choice(["completions", "chat"]),
                default=None,
                help="Served model: the endpoint (default: completions where the server has it). Chat generates only.",
            ),
            click.option("--api-model", default=None, help="Served model: its name (default: the only one listed)."),
            click.option(
                "--api-key-env",
                default=None,
                metavar="VAR",
                help="Served model: environment variable holding the API key (sent as a header only, never stored).",
            ),
            click.option(
                "--max-concurrency",
                type=click.IntRange(min=1),
                default=None,
                help="Served model: most requests in flight (adaptive below it; default 32).",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                help="Served model: seconds per request (default 300).",
            ),
            click.option(
                "--max-retries",
                type=click.IntRange(min=0),
                default=None,
                help="Served model: retries on 429/5xx/timeouts/dropped connections (default 5).",
            ),
            click.option(
                "--tokenizer",
                default=None,
                metavar="ALIAS|PATH",
                help="Served model: local tokenizer for exact token splits (default: the server's /tokenize, "
                "else text offsets).",
            ),
        ]
    ):
        f = option(f)
    return f
