"""What the `harness` command shows: its own output and warnings, and the progress of the work; not
the libraries' chatter (their info logs, their deprecation notices to one another, bars that count
nothing a user waits for). `harness -v` shows the libraries' logging and warnings again.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
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
    warnings.filterwarnings("ignore", category=FutureWarning, module=LIBRARY_MODULES)
    if "transformers" in sys.modules:  # already loaded (a command run in-process): tell it directly
        sys.modules["transformers"].logging.set_verbosity_error()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def quiet_lm_eval_progress() -> None:
    """lm-eval draws a bar per task while it builds the requests (unlabelled, over in a blink) and one
    while it tokenizes them (the runner's own bar then counts the same requests): off. The runner's
    bars (loglikelihood, generate_until) remain."""
    import lm_eval.api.model
    import lm_eval.api.task

    for module in (lm_eval.api.task, lm_eval.api.model):
        module.tqdm = _no_bar  # both call the name they imported: `from tqdm import tqdm`


def _no_bar(*args: Any, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(*args, **{**kwargs, "disable": True})
