"""Keeping secrets out of artifacts: values of the environment's keys and tokens never reach a record or log."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

# an environment variable holds a secret when a part of its name (split at _) is one of these
SECRET_NAME_PARTS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "AUTH"}
MIN_SECRET_LENGTH = 6  # shorter values ("1", "false") would blank ordinary text
MASK = "***"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the secret-looking environment variables (HF_TOKEN, OPENAI_API_KEY...), longest first."""
    environ = os.environ if environ is None else environ
    found = {
        value
        for name, value in environ.items()
        if set(name.upper().split("_")) & SECRET_NAME_PARTS and len(value) >= MIN_SECRET_LENGTH
    }
    return sorted(found, key=len, reverse=True)


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """obj with every secret value inside its strings (keys too) replaced by ***."""
    secrets = secret_values() if secrets is None else secrets
    if not secrets:
        return obj
    if isinstance(obj, str):
        changed = True
        while changed:  # the mask and the text after it may spell a secret again ("***" + "abc")
            changed = False
            for secret in secrets:
                if secret in obj:
                    obj, changed = obj.replace(secret, MASK), True
        return obj
    if isinstance(obj, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, tuple):
        return tuple(redact(v, secrets) for v in obj)
    return obj


class RedactingFilter(logging.Filter):
    """Masks secret values in log records (message and arguments) before any handler writes them."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = secret_values()
        if secrets:
            record.msg = redact(str(record.getMessage()), secrets)
            record.args = None
        return True
