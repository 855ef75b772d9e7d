"""docs/concepts/guarantees.md runs: its ```python blocks in order, in one namespace, in a
fresh directory; a ```python block immediately followed by a ```text block must print
exactly that text."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "concepts" / "guarantees.md"
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def _blocks(text: str) -> list[tuple[str, str | None]]:
    """``(python source, expected output or None)`` of each ```python block."""
    found = list(_BLOCK.finditer(text))
    out: list[tuple[str, str | None]] = []
    for i, block in enumerate(found):
        if block.group(1) != "python":
            continue
        expected = None
        if i + 1 < len(found):
            follower = found[i + 1]
            between = text[block.end() : follower.start()]
            if follower.group(1) == "text" and not between.strip():
                expected = follower.group(2)
        out.append((block.group(2), expected))
    return out


def test_guarantees_doc_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _blocks(DOC.read_text())
    assert blocks, "no python blocks"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__guarantees__"}
    for source, expected in blocks:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(source, str(DOC), "exec"), namespace)
        if expected is not None:
            assert buffer.getvalue() == expected, source
