"""The README's recipe table is the library's own listing, so it cannot drift from the recipe files."""

from __future__ import annotations

import re

from tests.support import paths
from wmap.commands.recipes import markdown
from wmap.recipes import catalog


def readme_table() -> str:
    text = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- recipes:begin[^>]*-->\n(.*?)<!-- recipes:end -->", text, re.S)
    assert m, "the README has no recipes table between its markers"
    return m.group(1)


def test_the_readme_table_is_what_wmap_recipes_prints() -> None:
    assert readme_table() == markdown(catalog()), "regenerate it: wmap recipes --format markdown"


def test_every_recipe_has_a_row() -> None:
    rows = [line for line in readme_table().splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `([^`]+)`", r).group(1) for r in rows] == [r.name for r in catalog()]  # type: ignore[union-attr]
