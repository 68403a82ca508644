"""Fixtures shared across test modules. The CLI tests' work folder is defined in tests/support/cli_fixtures.py."""

from tests.support.cli_fixtures import cli_work, in_cli_work  # noqa: F401  (registered as fixtures)
