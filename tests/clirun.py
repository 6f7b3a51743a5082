"""`harness ...` in this process, through click's CliRunner: the real commands, options and error
handling (harness.cli's group main()), without starting an interpreter and loading torch per call.

What a user would see on stderr is collected into `stderr`: the command's own writes, progress bars,
log records that pass the loggers' levels, and warnings under Python's default filters (pytest's own
capture of warnings and logs would otherwise swallow them), so "one line on stderr" means the same
here as in a subprocess.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass

from click.testing import CliRunner

from harness.cli import cli


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


class _ToStderr(logging.Handler):
    """The root handler the command installs for a user (logging.basicConfig), writing to the
    stderr of the moment: CliRunner's while a command runs."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def harness(*args: str, env: dict[str, str | None] | None = None) -> Outcome:
    """`harness ARGS` in-process; `env` entries are set for the call (None: unset)."""
    handler = _ToStderr(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's defaults, as a fresh interpreter has them
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = _show_on_stderr
            result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    finally:
        root.removeHandler(handler)
    return Outcome(result.exit_code, result.stdout, result.stderr)


# what a run's stderr may show besides harness's own messages: the runner's bars, the model's loading bar
PROGRESS_BARS = ("loglikelihood:", "generate_until:", "Loading weights:")


def progress_lines(stderr: str) -> list[str]:
    """stderr split into its lines and the redraws of progress bars (\\r), blanks dropped."""
    return [part for line in stderr.splitlines() for part in line.split("\r") if part.strip()]


def library_noise(stderr: str) -> list[str]:
    """The lines of a run's stderr that are neither a progress bar of the work nor harness's own."""
    return [line for line in progress_lines(stderr) if not line.startswith(PROGRESS_BARS)]
