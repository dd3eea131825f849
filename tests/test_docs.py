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


def test_every_key_is_documented_once_and_the_docs_and_help_are_written_from_there():
    """src/normlab/keys.py documents every top-level and data.* key of the composed config and every model.* key
    of conf/model/ (no more, no fewer); docs/running.md's tables and --help's key lines are what scripts/keys.py
    writes from it, defaults included."""
    import importlib.util

    from normlab.api import compose
    from normlab.keys import KEYS, MODEL_KEYS, docs_table, help_lines, model_table

    config = compose([])
    keys = {k for k, v in config.items() if not isinstance(v, dict) and k != "experiment"}
    keys |= {f"data.{k}" for k in config["data"]}
    documented = [n for k in KEYS for n in k.names]
    assert sorted(documented) == sorted(keys), "add the key to src/normlab/keys.py, then run scripts/keys.py --write"
    spec = importlib.util.spec_from_file_location("keys_script", ROOT / "scripts" / "keys.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    docs, help_text = script.DOCS.read_text(), script.HELP.read_text()
    stale = "out of date: run `python scripts/keys.py --write`"
    assert script.with_docs_table(docs, docs_table(config)) == docs, stale
    models = script.model_defaults()
    assert sorted(k.names[0] for k in MODEL_KEYS) == sorted({f"model.{k}" for v in models.values() for k in v})
    assert script.with_docs_table(docs, model_table(models), "model keys") == docs, stale
    assert script.with_help_lines(help_text, help_lines(config)) == help_text, stale
    assert "| `batch_size` | 60 |" in docs and "    batch_size=60 " in help_text
