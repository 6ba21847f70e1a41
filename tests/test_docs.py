"""The build-time parts of the documentation site (scripts/mkdocs_hooks.py).

`make docs` builds the whole site with --strict (CI runs it); these tests pin
down what the hooks generate and refuse, without needing mkdocs installed.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

import lockheed

ROOT = Path(__file__).resolve().parent.parent


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts/mkdocs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _hooks()


def _page(src_uri: str) -> Any:
    return SimpleNamespace(file=SimpleNamespace(src_uri=src_uri))


def test_the_cli_reference_is_every_listed_commands_help() -> None:
    text = hooks.cli_reference()

    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[0] == "lockheed"
    assert {"lockheed run", "lockheed list", "lockheed elect"} <= set(headings)
    assert not [h for h in headings if h.startswith("lockheed _")]  # hidden commands stay hidden
    assert "usage: lockheed run" in text
    assert text.count("```text") == len(headings)


def test_the_benchmarks_page_is_the_report_with_its_charts() -> None:
    text = hooks.bench_report()

    assert not text.startswith("# ")  # the page keeps its own title
    assert re.search(r"^### Results$", text, re.MULTILINE)  # its headings one level down
    assert not re.search(r"^## Results$", text, re.MULTILINE)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images, "the report shows its charts"
    published = {f"{hooks.CHARTS_URI}/{chart.name}" for chart in hooks.charts()}
    assert set(images) <= published


def test_markers_are_expanded_and_unknown_ones_fail() -> None:
    out = hooks.on_page_markdown("a\n<!-- lockheed-cli-help -->\nb", _page("cli.md"), {}, None)
    assert "<!--" not in out and "## lockheed run" in out

    with pytest.raises(hooks.DocsBuildError, match="unknown marker <!-- lockheed-nope -->"):
        hooks.on_page_markdown("<!-- lockheed-nope -->", _page("x.md"), {}, None)


def test_optional_pages_are_listed_only_once_they_exist(tmp_path: Path) -> None:
    nav: list[dict[str, Any]] = [
        {"Home": "index.md"},
        {"Metrics": "metrics.md"},
        {"More": [{"Metrics": "metrics.md"}]},
    ]
    (tmp_path / "index.md").write_text("# Home\n")

    without = hooks.on_config({"docs_dir": str(tmp_path), "nav": [dict(i) for i in nav]})
    (tmp_path / "metrics.md").write_text("# Metrics\n")
    with_page = hooks.on_config({"docs_dir": str(tmp_path), "nav": [dict(i) for i in nav]})

    assert without["nav"] == [{"Home": "index.md"}, {"More": []}]
    assert with_page["nav"] == nav


def test_the_api_page_must_document_every_public_name() -> None:
    every = "".join(f'<h2 id="lockheed.{name}"></h2>' for name in lockheed.__all__)
    role = "<p>raises :class:<code>~lockheed.LockLost</code></p>"

    out = hooks.on_post_page(every + role, _page("api.md"), {})
    elsewhere = hooks.on_post_page(role, _page("concepts.md"), {})

    assert '<a href="#lockheed.LockLost"><code>LockLost</code></a>' in out
    assert elsewhere == "<p>raises <code>LockLost</code></p>"
    missing = every.replace('<h2 id="lockheed.Lock"></h2>', "")
    with pytest.raises(hooks.DocsBuildError, match=r"does not document Lock$"):
        hooks.on_post_page(missing, _page("api.md"), {})
