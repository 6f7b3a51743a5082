"""`python -m harness` (and `accelerate launch -m harness`) runs the CLI."""

from harness.cli import main

main()
