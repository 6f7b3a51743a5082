"""The `harness` subcommands other than `run`, one module a job; harness.cli registers them.

Nothing here imports harness.cli: the options several commands share live in .options.
"""
