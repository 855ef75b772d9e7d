"""Every Python block of the README and of the documentation site runs as written.

The convention every page under ``docs/`` (and ``README.md``) follows:

- Each fenced ```` ```python ```` block runs.  The blocks of one file run in order, in one
  namespace (a later block uses what an earlier one defined), with a fresh temporary
  directory as the working directory, and need no network.  So a page shows complete,
  runnable code: no ``...`` placeholders, no undefined names.
- A ```` ```python ```` block followed directly (blank lines allowed) by a
  ```` ```text ```` block must print exactly that text (compared line by line after
  stripping trailing whitespace, and ignoring blank lines at either end).  So pages show
  real output, and never timings or anything else that changes from run to run.
- ```` ```bash ````, ```` ```console ````, ```` ```text ```` (not after a Python block),
  ```` ```yaml ```` and every other language are shown, not run.
- A block that needs a Redis server is marked by the HTML comment
  ``<!-- docs-test: redis -->`` on the line before its fence (invisible on the rendered
  page).  The test then starts the real ``redis-server`` of ``tests/conftest.py`` (skipped
  where it is not installed, an error in CI) and, in that block, replaces every
  ``redis://localhost:6379/0`` (write exactly that URL; a ``?prefix=...`` after it is
  kept) with the test server's URL, on database 9, which is emptied before each file.
  ``<!-- docs-test: redis-cluster -->`` does the same for ``redis+cluster://localhost:7000/``
  on the test session's Redis Cluster (its ``prefix=`` made unique).  Another kind of
  server gets its own marker by adding an entry to :data:`SERVERS`.

The examples (``examples/*.py``) are run by ``tests/test_examples.py``.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+)\s*(?P<lang>[\w+-]*)[^\n]*$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>[\w-]+)\s*-->\s*$")


@dataclass
class Block:
    """One fenced block of a page."""

    lang: str
    code: str
    line: int  # of the opening fence, 1-based
    marker: str | None  # the docs-test marker on the line before the fence
    expected: str | None = None  # the text block that follows a python block


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown *text*, each python block with the text block
    that follows it (if one does)."""
    lines = text.split("\n")
    found: list[Block] = []
    previous_end = -1
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m["fence"], m["lang"].lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        marker_match = _MARKER.match(lines[i - 1]) if i > 0 else None
        block = Block(
            lang, "\n".join(lines[i + 1 : j]), i + 1, marker_match["what"] if marker_match else None
        )
        between = lines[previous_end + 1 : i]
        if (
            lang == "text"
            and found
            and found[-1].lang == "python"
            and found[-1].expected is None
            and all(not ln.strip() for ln in between)
        ):
            found[-1].expected = block.code
        else:
            found.append(block)
        previous_end = j
        i = j + 1
    return found


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n")).strip("\n")


# -- servers a marked block may need ----------------------------------------------------
def _redis(request: pytest.FixtureRequest) -> Callable[[str], str]:
    import redis

    server = request.getfixturevalue("redis_server")
    client = redis.Redis(port=server.port, db=9)
    client.flushdb()
    client.close()
    url = f"redis://127.0.0.1:{server.port}/9"
    return lambda code: code.replace("redis://localhost:6379/0", url)


def _redis_cluster(request: pytest.FixtureRequest) -> Callable[[str], str]:
    import uuid

    cluster = request.getfixturevalue("redis_cluster")
    url = f"redis+cluster://127.0.0.1:{cluster.ports[0]}/"
    fresh = f"{url}?prefix=d{uuid.uuid4().hex[:8]}"  # its own keys on the shared cluster
    return lambda code: code.replace("redis+cluster://localhost:7000/?prefix=", fresh)


#: marker name -> set-up returning the rewrite applied to a marked block's code.
SERVERS: dict[str, Callable[[pytest.FixtureRequest], Callable[[str], str]]] = {
    "redis": _redis,
    "redis-cluster": _redis_cluster,
}


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_python_block_runs_and_prints_what_the_page_shows(
    page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.chdir(tmp_path)
    # The page runs as a script would: as the ``__main__`` module, so what looks names up
    # through ``sys.modules`` (typing.get_type_hints on a TypedDict state) finds them.
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    namespace = main.__dict__
    rewrites: dict[str, Callable[[str], str]] = {}
    for block in blocks(page.read_text(encoding="utf-8")):
        if block.lang != "python":
            continue
        code = block.code
        if block.marker is not None:
            if block.marker not in SERVERS:
                raise AssertionError(
                    f"{_page_id(page)}:{block.line}: unknown marker docs-test: {block.marker} "
                    f"(known: {', '.join(sorted(SERVERS))})"
                )
            if block.marker not in rewrites:
                rewrites[block.marker] = SERVERS[block.marker](request)
            code = rewrites[block.marker](code)
        where = f"{_page_id(page)}:{block.line}"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, where, "exec"), namespace)  # the page's own code
        if block.expected is not None:
            assert _normalized(out.getvalue()) == _normalized(block.expected), (
                f"{where}: the block printed something else than the page shows"
            )


def test_the_parser_pairs_output_and_reads_markers() -> None:
    page = (
        "```python\nprint(1)\n```\n\n```text\n1\n```\n"
        "<!-- docs-test: redis -->\n```python\nx = 1\n```\n"
        "```bash\necho hi\n```\n```text\nnot output\n```\n"
    )
    found = blocks(page)
    assert [(b.lang, b.marker, b.expected) for b in found] == [
        ("python", None, "1"),
        ("python", "redis", None),
        ("bash", None, None),
        ("text", None, None),
    ]


def test_a_wrong_output_fails(tmp_path: Path) -> None:
    # The comparison is real: a page claiming other output does not pass.
    (block,) = blocks("```python\nprint('a')\n```\n```text\nb\n```\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.code, "page", "exec"), {})
    assert block.expected is not None
    assert _normalized(out.getvalue()) != _normalized(block.expected)


def test_the_benchmark_plots_on_the_site_are_the_measured_ones() -> None:
    # MkDocs serves only docs/: the plots are copied there, and must not go stale.
    plots = sorted((ROOT / "benchmarks" / "results").glob("*.png"))
    assert plots
    for plot in plots:
        copy = ROOT / "docs" / "assets" / "benchmarks" / plot.name
        assert copy.exists(), f"copy {plot} to {copy}"
        assert copy.read_bytes() == plot.read_bytes(), f"{copy} is older than {plot}"


def test_the_api_reference_shows_doctests_as_code() -> None:
    pytest.importorskip("griffe")  # the docs extra
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "griffe_doctests", ROOT / "tools" / "griffe_doctests.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "Intro.\n\n>>> [1, 2]\n[1, 2]\n>>> x = (\n...     1)\n\nAfter."
    assert module.fence_doctests(text) == (
        "Intro.\n\n```pycon\n>>> [1, 2]\n[1, 2]\n>>> x = (\n...     1)\n```\n\nAfter."
    )
    assert module.fence_doctests(">>> 1\n1") == "```pycon\n>>> 1\n1\n```"


def test_the_readme_links_to_files_that_exist() -> None:
    # MkDocs checks the links between pages of the site (--strict); this checks the
    # README's, which GitHub renders from the repository.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local
    for link in local:
        assert (ROOT / link).exists(), link
