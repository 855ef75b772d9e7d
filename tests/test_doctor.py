"""``tieredmem doctor``: quick_check by default, integrity_check with --full, exit 1 when the
file is damaged (issue #16: a full integrity_check on every run took seconds per GB)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import apsw
import pytest

import tieredmem

from .test_cli import run


@pytest.fixture
def healthy(tmp_path: Path) -> Path:
    path = tmp_path / "d.db"
    with tieredmem.open(path, maintenance_interval=0) as store:
        store.put_many(
            (("docs",), f"k{i:05d}", {"blob": os.urandom(600).hex()}) for i in range(2_000)
        )
        store.backend.checkpoint("TRUNCATE")  # type: ignore[attr-defined]
    return path


@pytest.mark.parametrize("full", [False, True])
def test_doctor_on_a_sound_file(healthy: Path, full: bool) -> None:
    out = run("doctor", str(healthy), "--json", *(["--full"] if full else []))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["integrity"] == "ok"
    assert report["check"] == ("integrity_check" if full else "quick_check")
    assert report["rows"] == 2_000


@pytest.mark.parametrize("full", [False, True])
def test_doctor_exits_1_on_a_damaged_file(healthy: Path, full: bool) -> None:
    con = apsw.Connection(str(healthy))
    page_size = int(con.pragma("page_size"))
    pages = int(con.pragma("page_count"))
    con.close()
    with open(healthy, "r+b") as fh:  # garble a page in the middle of the items b-tree
        fh.seek(page_size * (pages // 2))
        fh.write(b"\xff" * 64)
    out = run("doctor", str(healthy), "--json", *(["--full"] if full else []))
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert json.loads(out.stdout)["integrity"] != "ok"
