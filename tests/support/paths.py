"""Where the repository's files are, for tests at any depth of the test tree."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
GOLDEN = TESTS / "golden"
FIXTURES = TESTS / "fixtures"
SPECS = ROOT / "specs"
EXAMPLES = SPECS / "examples"
