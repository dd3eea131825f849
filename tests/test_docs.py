"""The README is read in five minutes and links to the rest: at most 200 lines, every docs/ page linked from it,
and every relative link in the README and docs/ points at a file or folder that exists."""

import re

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def links(page):
    return [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text())]


def test_the_readme_is_short_and_links_every_docs_page():
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 200
    linked = {(readme.parent / target).resolve() for target in links(readme)}
    assert {page.resolve() for page in PAGES[1:]} <= linked


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = [t for t in links(page) if t and not t.startswith(("http:", "https:")) and not (page.parent / t).exists()]
    assert not broken, f"{page.name} links to missing {broken}"
