"""Build-time parts of the documentation site (mkdocs.yml ``hooks:``).

- ``<!-- lockheed-cli-help -->`` in a page becomes the ``--help`` of the
  ``lockheed`` command and of each of its subcommands, run at build time, so
  the CLI reference cannot drift from the CLI.
- ``<!-- lockheed-bench-report -->`` becomes bench/results/report.md (its
  headings one level down), and the report's charts are published beside the
  page, so the benchmarks page is always the last committed run.
- Nav entries in ``OPTIONAL_PAGES`` are listed only once their page exists.
- The API reference must document every name in ``lockheed.__all__``, and the
  Sphinx roles of the docstrings (``:class:`~lockheed.Lock```) are shown as
  code, linked on the API page to the name's entry.

A command that fails, a missing report or chart, or a page left with a marker
it does not know fails the build.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "bench" / "results" / "report.md"
CHARTS_URI = "bench"  # where the charts go, relative to the site's root
OPTIONAL_PAGES = ("metrics.md",)

CLI_MARKER = "<!-- lockheed-cli-help -->"
BENCH_MARKER = "<!-- lockheed-bench-report -->"
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^/():]+\.png)\)")
_HEADING = re.compile(r"^(#{1,5}) ", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):<code>(~?)([\w.]+)</code>")
API_PAGE = "api.md"


class DocsBuildError(Exception):
    """Something a page needs at build time could not be made."""


def _help(*words: str) -> str:
    """``lockheed WORDS --help`` as a user's terminal of 80 columns shows it."""
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lockheed", *words, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        shown = " ".join(["lockheed", *words, "--help"])
        raise DocsBuildError(f"{shown} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout.rstrip()


def _subcommands() -> list[str]:
    """The subcommands ``lockheed --help`` lists (hidden ones excluded): from the
    parser when ``lockheed._cli.parser()`` is an argparse parser, else from the
    ``{a,b,...}`` of the usage line."""
    from lockheed import _cli

    make = getattr(_cli, "parser", None)
    top = make() if callable(make) else None
    if isinstance(top, argparse.ArgumentParser):
        for action in top._actions:
            if isinstance(action, argparse._SubParsersAction):
                listed = [choice.dest for choice in action._choices_actions]
                return [name for name in listed if not name.startswith("_")]
        return []
    usage = re.search(r"\{([\w,-]+)\}", _help())
    return [name for name in usage.group(1).split(",") if not name.startswith("_")] if usage else []


def cli_reference() -> str:
    parts = ["## lockheed", "", "```text", _help(), "```"]
    for name in _subcommands():
        parts += ["", f"## lockheed {name}", "", "```text", _help(name), "```"]
    return "\n".join(parts)


def bench_report() -> str:
    if not REPORT.is_file():
        raise DocsBuildError(f"{REPORT.relative_to(ROOT)} is missing: run `make bench`")
    lines = REPORT.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]  # the page has its own title
    text = _HEADING.sub(lambda m: f"#{m.group(1)} ", "\n".join(lines))
    return _IMAGE.sub(lambda m: f"![{m.group(1)}]({CHARTS_URI}/{m.group(2)})", text)


def charts() -> list[Path]:
    return sorted(REPORT.parent.glob("*.png"))


# -- mkdocs hooks ----------------------------------------------------------


def on_config(config: Any, **kwargs: Any) -> Any:
    docs = Path(config["docs_dir"])

    def keep(item: Any) -> bool:
        if isinstance(item, dict):
            for key, value in list(item.items()):
                if isinstance(value, list):
                    item[key] = [child for child in value if keep(child)]
                elif value in OPTIONAL_PAGES and not (docs / value).is_file():
                    return False
        return True

    config["nav"] = [item for item in config["nav"] or [] if keep(item)]
    return config


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    from mkdocs.structure.files import File

    for chart in charts():
        files.append(File.generated(config, f"{CHARTS_URI}/{chart.name}", abs_src_path=str(chart)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if BENCH_MARKER in markdown:
        markdown = markdown.replace(BENCH_MARKER, bench_report())
    left = re.findall(r"<!-- lockheed-[a-z-]+ -->", markdown)
    if left:
        raise DocsBuildError(f"{page.file.src_uri}: unknown marker {left[0]}")
    return markdown


def _role(match: re.Match[str], public: set[str], on_api_page: bool) -> str:
    short, target = match.group(1), match.group(2)
    shown = target.rsplit(".", 1)[-1] if short else target
    name = target.removeprefix("lockheed.")
    if on_api_page and name in public:
        return f'<a href="#lockheed.{name}"><code>{shown}</code></a>'
    return f"<code>{shown}</code>"


def on_post_page(output: str, page: Any, config: Any, **kwargs: Any) -> str:
    import lockheed

    public = set(lockheed.__all__)
    on_api_page = page.file.src_uri == API_PAGE
    if on_api_page:
        missing = sorted(name for name in public if f'id="lockheed.{name}"' not in output)
        if missing:
            raise DocsBuildError(f"{API_PAGE} does not document {', '.join(missing)}")
    return _ROLE.sub(lambda match: _role(match, public, on_api_page), output)
