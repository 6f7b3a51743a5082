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
