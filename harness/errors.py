"""Errors a user can cause. The CLI prints their message on one line and exits 2."""


class UserError(Exception):
    """A mistake in the user's input: shown as one line, no traceback."""


class UnknownTaskError(UserError):
    pass


class UnknownModelError(UserError):
    pass


class DataUnavailableError(UserError):
    pass


class BadOptionError(UserError):
    pass


class TaskConfigError(UserError):
    pass


def one_line(exc: BaseException) -> str:
    """An exception as `Type: first line of its message`, for a one-line error about it."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def line_in(exc: BaseException, filename: str) -> int | None:
    """The last line of file `filename` that the exception's traceback passed through, or None."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return lines[-1] if lines else None
