"""What the `harness` command shows: its own output and warnings, and the progress of the work; not
the libraries' chatter (their info logs, their deprecation notices to one another, bars that count
nothing a user waits for). `harness -v` shows the libraries' logging and warnings again.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.redact import RedactingFilter

LIBRARY_LOGGERS = ("lm_eval", "lm-eval", "datasets", "transformers", "huggingface_hub", "accelerate")
# FutureWarnings raised inside these libraries (peft calling a transformers property that is being
# renamed, say) are for their authors and ours; a user can do nothing about them
LIBRARY_MODULES = r"(transformers|peft|lm_eval|datasets|accelerate|sentence_transformers|huggingface_hub)(\.|$)"


def quiet_libraries(verbose: bool) -> None:
    """Logging for a command: warnings and up, secrets masked; the libraries' own at ERROR unless verbose."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # no API key or token of the environment in a log line
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        return
    # set before the libraries load (and seen by the processes `--num-processes` starts); a user's
    # own setting of these variables wins
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # "Map" bars of lm-eval's dataset preparation
    _ignore_library_future_warnings()
    if "transformers" in sys.modules:  # already loaded (a command run in-process): tell it directly
        sys.modules["transformers"].logging.set_verbosity_error()
    if "datasets" in sys.modules and _datasets_bars_are_ours():
        sys.modules["datasets"].disable_progress_bars()


@contextmanager
def libraries_quieted() -> Iterator[None]:
    """For the Python API: a command's quiet (libraries' logs at ERROR, their FutureWarnings and
    needless bars off) for the length of a call; the caller's settings are back afterwards."""
    import datasets
    import transformers

    from harness.lm_eval_compat import lm_eval_bar_modules

    loggers = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    verbosity = transformers.logging.get_verbosity()
    bars = {module: module.tqdm for module in lm_eval_bar_modules()}
    datasets_bars = _datasets_bars_are_ours() and not datasets.are_progress_bars_disabled()
    try:
        with warnings.catch_warnings():
            _ignore_library_future_warnings()
            for name in LIBRARY_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
            transformers.logging.set_verbosity_error()
            if datasets_bars:
                datasets.disable_progress_bars()
            quiet_lm_eval_progress()
            yield
    finally:
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)
        transformers.logging.set_verbosity(verbosity)
        if datasets_bars:
            datasets.enable_progress_bars()
        for module, bar in bars.items():
            module.tqdm = bar


def _ignore_library_future_warnings() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning, module=LIBRARY_MODULES)


def _datasets_bars_are_ours() -> bool:
    """Whether datasets' bars may be switched in code: not when $HF_DATASETS_DISABLE_PROGRESS_BARS decides."""
    import datasets.config

    return datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is None


def quiet_lm_eval_progress() -> None:
    """lm-eval draws a bar per task while it builds the requests (unlabelled, over in a blink) and one
    while it tokenizes them (the runner's own bar then counts the same requests): off. The runner's
    bars (loglikelihood, generate_until) remain."""
    from harness.lm_eval_compat import lm_eval_bar_modules

    for module in lm_eval_bar_modules():
        module.tqdm = _no_bar


def _no_bar(*args: Any, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(*args, **{**kwargs, "disable": True})
