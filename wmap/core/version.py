"""The one home of wmap's version: the package, the CLI, saved plans, reports and written
checkpoints all read it from here, and `pyproject.toml` takes it from here too."""

VERSION = "0.1.0"
