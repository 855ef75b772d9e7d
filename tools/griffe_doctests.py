"""A griffe extension for the API reference (mkdocs.yml loads it): the ``>>>`` examples
of tieredmem's reST docstrings become ``pycon`` code blocks, so MkDocs shows them as code
instead of reading ``['a', 'b']`` in an example's output as Markdown."""

from __future__ import annotations

import re
from typing import Any

import griffe

_PROMPT = re.compile(r"^(\s*)>>> ")


def fence_doctests(text: str) -> str:
    """*text* with each run of doctest lines (from a ``>>>`` line to the next blank line)
    wrapped in a ``pycon`` fence (tests/test_docs.py checks it: an example here would be
    read by doctest as examples of its own).
    """
    out: list[str] = []
    inside = False
    for line in text.split("\n"):
        if not inside and _PROMPT.match(line):
            out.append(_PROMPT.match(line).group(1) + "```pycon")  # type: ignore[union-attr]
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fence the doctest examples of every docstring griffe loads."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>> " in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
