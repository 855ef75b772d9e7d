"""The tieredmem command, run as a subprocess the way a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tieredmem

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "tieredmem.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "filled.db"
    with tieredmem.MemorySaver(path=str(path)) as memory:
        memory.longterm.put(("users", "alice"), "prefs", {"lang": "fr"}, ttl=3600)
        memory.longterm.put(("users", "bob"), "blob", b"\x00\x01raw")
        h = memory.history("chat")
        h.extend({"i": i, "text": "hello " * 20} for i in range(120))
        doc = memory.state("chat")
        doc["goal"] = "demo"
        doc.commit()
    return path


def test_stats_and_inspect_json(filled: Path) -> None:
    out = run("stats", str(filled), "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["histories"] == 1 and stats["states"] == 1 and stats["user_namespaces"] == 2
    out = run("inspect", str(filled), "--history", "chat", "--json")
    data = json.loads(out.stdout)
    assert data["items"] == 120 and data["first"]["i"] == 0 and data["last"]["i"] == 119
    out = run("inspect", str(filled), "--namespace", "users/alice", "--json")
    assert [i["key"] for i in json.loads(out.stdout)["items"]] == ["prefs"]
    out = run("inspect", str(filled))
    assert out.returncode == 0 and "histories" in out.stdout


def test_export_import_round_trip_is_exact(filled: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    assert run("export", str(filled), str(dump)).returncode == 0
    copy = tmp_path / "copy.db"
    out = run("import", str(copy), str(dump), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["imported"] == len(dump.read_text().splitlines())
    dump2 = tmp_path / "dump2.jsonl"
    assert run("export", str(copy), str(dump2)).returncode == 0
    assert dump.read_text() == dump2.read_text()
    with tieredmem.MemorySaver(path=str(copy)) as memory:
        assert [m["i"] for m in memory.history("chat")] == list(range(120))
        assert memory.longterm.get(("users", "bob"), "blob").value == b"\x00\x01raw"
        item = memory.longterm.get(("users", "alice"), "prefs")
        assert item.value == {"lang": "fr"} and item.expires_at is not None
        assert dict(memory.state("chat")) == {"goal": "demo"}


def test_compact_and_doctor(filled: Path) -> None:
    out = run("compact", str(filled), "--json")
    assert out.returncode == 0, out.stderr
    assert "bytes_freed" in json.loads(out.stdout)
    out = run("doctor", str(filled), "--json")
    assert out.returncode == 0
    report = json.loads(out.stdout)
    assert report["integrity"] == "ok" and report["pragma_journal_mode"] == "wal"


@pytest.mark.parametrize("command", ["stats", "inspect", "doctor", "compact"])
def test_errors_are_one_clear_line(tmp_path: Path, command: str) -> None:
    missing = run(command, str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("hello" * 100)
    out = run(command, str(not_a_store))
    assert out.returncode == 2 and "not a tieredmem store" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bad_arguments_and_bad_import_file(tmp_path: Path) -> None:
    assert run("stats").returncode == 2
    assert run("frobnicate").returncode == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "an export"}\n')
    out = run("import", str(tmp_path / "x.db"), str(bad))
    assert out.returncode == 2 and "bad.jsonl:1" in out.stderr


def test_demo_runs_measures_and_recalls(tmp_path: Path) -> None:
    out = run(
        "demo", "--turns", "600", "--path", "demo.db", "--keep", "300", "--json", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    assert first["run"] == 1 and first["messages_kept"] == 301  # 300 kept + 1 pinned
    assert first["rss_end_mb"] > 0 and first["list_rss_mb"] > 0  # measured, not assumed
    out = run(
        "demo", "--turns", "100", "--path", "demo.db", "--keep", "300", "--json", cwd=tmp_path
    )
    second = json.loads(out.stdout)
    assert second["run"] == 2 and second["recalled_from_earlier_runs"] == 301
    assert second["first_message_pinned"] is True


def test_migrate_from_sqlitesaver(tmp_path: Path) -> None:
    sqlite = pytest.importorskip("langgraph.checkpoint.sqlite")
    from .test_langgraph_saver import run_chat

    with sqlite.SqliteSaver.from_conn_string(str(tmp_path / "old.db")) as old:
        run_chat(old, 5)
        expected = len(list(old.list(None)))
    out = run("migrate", str(tmp_path / "old.db"), str(tmp_path / "new.db"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["imported_checkpoints"] == expected


def test_pytest_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_store(tiered_store):
            tiered_store.put(("a",), "k", 1)
            assert tiered_store.get(("a",), "k").value == 1

        def test_memory(memory_saver):
            memory_saver.history("s").append({"x": 1})
            assert memory_saver.history("s").recent() == [{"x": 1}]

        def test_saver(tiered_saver):
            assert tiered_saver.get_tuple({"configurable": {"thread_id": "t"}}) is None

        def test_isolated(tiered_store):
            assert tiered_store.get(("a",), "k") is None
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=4)


def test_inspect_state_and_thread(filled: Path, tmp_path: Path) -> None:
    out = run("inspect", str(filled), "--state", "chat", "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["keys"] == 1 and data["has_base"] is False
    out = run("inspect", str(filled), "--thread", "nope")
    assert out.returncode == 2 and "no LangGraph thread" in out.stderr


def test_bench_selects_benchmarks() -> None:
    # The real quick runs are CI's smoke step (.ci/run runs every benchmark --quick); here
    # only the selection and its error path, so the test suite writes no result files.
    out = run("bench", "--quick", "--only", "no-such-benchmark")
    assert out.returncode == 2 and "benchmarks" in out.stderr
