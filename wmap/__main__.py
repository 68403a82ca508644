"""`python -m wmap` is the `wmap` command."""

from wmap.cli import run

run()
