"""lm-eval's private API (anything outside lm_eval.api and simple_evaluate), imported in this one
place: an lm-eval upgrade that moves or changes these is this file's work."""

# runner (harness/models)
from lm_eval.models.utils import (  # noqa: F401
    configure_pad_token,
    handle_stop_sequences,
    has_bos_prefix,
    normalize_gen_kwargs,
    postprocess_generated_text,
    resolve_max_length,
)
from lm_eval.models.utils_hf import stop_sequences_criteria  # noqa: F401
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # noqa: F401


def cli_evaluate() -> None:
    """lm-eval's command line (imported when called: it pulls in lm-eval's whole CLI)."""
    from lm_eval.__main__ import cli_evaluate as run

    run()
