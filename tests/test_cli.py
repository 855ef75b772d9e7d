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


# -- a newcomer's first hour (#14) and the CLI side of hardening (#15) ------------------
READ_COMMANDS = ["stats", "inspect", "search", "doctor", "export"]


def _read_args(command: str, path: Path, tmp_path: Path) -> list[str]:
    return [command, str(path)] + ([str(tmp_path / "out.jsonl")] if command == "export" else [])


def _listing(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.name: (p.stat().st_mode, p.read_bytes())
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _one_clean_line(out: subprocess.CompletedProcess[str]) -> str:
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and "Errno" not in out.stderr
    return lines[0]


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_read_commands_refuse_an_empty_file_and_leave_it_empty(
    tmp_path: Path, command: str
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    out = run(*_read_args(command, empty, tmp_path))
    assert out.returncode == 2
    assert "empty file" in _one_clean_line(out)
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_read_commands_never_change_a_store_file(
    filled: Path, tmp_path: Path, command: str
) -> None:
    store_dir = filled.parent / "store"
    store_dir.mkdir()
    path = filled.rename(store_dir / filled.name)
    before = _listing(store_dir)
    out = run(*_read_args(command, path, tmp_path))
    assert out.returncode == 0, out.stderr
    assert _listing(store_dir) == before


@pytest.mark.parametrize("command", [*READ_COMMANDS, "compact"])
def test_a_directory_is_refused_in_the_commands_words(tmp_path: Path, command: str) -> None:
    (tmp_path / "adir").mkdir()
    out = run(*_read_args(command, tmp_path / "adir", tmp_path))
    assert out.returncode == 2
    assert "is a directory" in _one_clean_line(out)


def test_os_errors_are_one_line_without_errno(filled: Path, tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    out = run("export", str(filled), str(tmp_path / "adir"))  # EISDIR on the output
    assert out.returncode == 2 and "adir: is a directory" in _one_clean_line(out)
    out = run("export", str(filled), str(tmp_path / "no" / "such" / "dir.jsonl"))  # ENOENT
    assert out.returncode == 2 and "no such file or directory" in _one_clean_line(out)
    out = run("import", str(tmp_path / "x.db"), str(tmp_path / "adir"))
    assert out.returncode == 2 and "is a directory" in _one_clean_line(out)
    out = run("import", str(tmp_path / "x.db"), str(tmp_path / "none.jsonl"))
    assert out.returncode == 2 and "none.jsonl: no such file" in _one_clean_line(out)
    assert not (tmp_path / "x.db").exists()  # a bad input creates no store
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.db"
        locked.write_bytes(filled.read_bytes())
        locked.chmod(0)
        out = run("stats", str(locked))
        assert out.returncode == 2 and "permission denied" in _one_clean_line(out)


def test_stats_shows_the_files_figures_not_the_process_counters(filled: Path) -> None:
    out = run("stats", str(filled), "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    for counter in ("hits", "misses", "hit_rate", "hot_budget", "hot_bytes", "durability"):
        assert counter not in stats
    assert stats["histories"] == 1 and stats["states"] == 1 and stats["user_namespaces"] == 2
    assert stats["langgraph_threads"] == 0
    with tieredmem.open(str(filled)) as store:
        expected = store.stats()
    assert stats["rows"] == expected.cold_rows
    assert stats["file_bytes"] == expected.cold_bytes
    assert stats["free_bytes"] == expected.cold_free_bytes
    assert "wal_bytes" in stats


@pytest.mark.parametrize(
    "what",
    [
        ["--history", "nope"],
        ["--history", "cha"],  # a prefix of one that exists is not it
        ["--state", "nope"],
        ["--namespace", "nope/x"],
        ["--namespace", "users/carol"],
        ["--thread", "nope"],
    ],
)
def test_inspect_of_a_missing_thing_exits_2_with_one_line(filled: Path, what: list[str]) -> None:
    out = run("inspect", str(filled), *what)
    assert out.returncode == 2
    assert f"no {what[0][2:]} {what[1]!r}".replace("thread", "LangGraph thread") in (
        _one_clean_line(out)
    )
    assert out.stdout == ""


def test_json_is_accepted_before_or_after_the_command(filled: Path) -> None:
    before = run("--json", "stats", str(filled))
    after = run("stats", str(filled), "--json")
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)


def test_help_shows_no_markup() -> None:
    texts = [run("--help").stdout]
    texts += [run(cmd, "--help").stdout for cmd in ("demo", "stats", "export", "bench")]
    for text in texts:
        assert text and "``" not in text and ":func:" not in text


@pytest.mark.parametrize("turns", ["-5", "0", "many"])
def test_demo_refuses_a_non_positive_turn_count(tmp_path: Path, turns: str) -> None:
    out = run("demo", "--turns", turns, "--path", "d.db", cwd=tmp_path)
    assert out.returncode == 2 and "--turns" in out.stderr
    assert not (tmp_path / "d.db").exists()


def test_export_is_private_whatever_the_umask(filled: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    existing = tmp_path / "old.jsonl"
    existing.write_text("x")
    existing.chmod(0o644)
    for out_path in (tmp_path / "new.jsonl", existing):
        proc = subprocess.run(
            [sys.executable, "-m", "tieredmem.cli", "export", str(filled), str(out_path)],
            env=env,
            capture_output=True,
            text=True,
            umask=0,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert out_path.stat().st_mode & 0o777 == 0o600


def test_export_writes_histories_and_values_as_json(filled: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    assert run("export", str(filled), str(dump)).returncode == 0
    records = [json.loads(line) for line in dump.read_text().splitlines()]
    chunks = [r["history"]["chunk"] for r in records if "chunk" in r.get("history", {})]
    slots = [r["history"]["slot"] for r in records if "slot" in r.get("history", {})]
    items = [e["item"] for chunk in chunks for e in chunk] + [s["item"] for s in slots]
    assert [m["i"] for m in items] == list(range(120))
    prefs = next(r for r in records if r["key"] == "prefs")
    assert prefs["value"] == {"lang": "fr"}
    assert not any("bytes" in r for r in records if r["ns"][:2] == ["tieredmem", "history"])


def test_import_reads_the_old_base64_form_too(filled: Path, tmp_path: Path) -> None:
    from tieredmem.history import encode_row

    dump = tmp_path / "dump.jsonl"
    assert run("export", str(filled), str(dump)).returncode == 0
    old_lines = []
    for line in dump.read_text().splitlines():  # what export wrote before #14
        r = json.loads(line)
        if "history" in r:
            raw = encode_row(r["key"], r.pop("history"))
            r["bytes"] = __import__("base64").b64encode(raw).decode("ascii")
        elif "value" in r:
            r["json"] = json.dumps(r.pop("value"), separators=(",", ":"))
        old_lines.append(json.dumps(r))
    old = tmp_path / "old.jsonl"
    old.write_text("\n".join(old_lines) + "\n")
    copy = tmp_path / "copy.db"
    assert run("import", str(copy), str(old)).returncode == 0
    again = tmp_path / "again.jsonl"
    assert run("export", str(copy), str(again)).returncode == 0
    assert again.read_text() == dump.read_text()


def _big_export(path: Path, rows: int) -> None:
    line = (
        '{"ns":["bulk","n%d"],"key":"k%d","created_at":1.0,"updated_at":1.0,'
        '"expires_at":null,"ttl":null,"value":{"text":"%s","i":%d}}\n'
    )
    with path.open("w") as fh:
        fh.writelines(line % (i % 50, i, "payload " * 40, i) for i in range(rows))


def _bulk_rows(path: Path) -> int:
    with tieredmem.open(str(path), maintenance_interval=0) as store:
        return sum(
            len(store.search(ns, limit=10**6)) for ns in store.list_namespaces(prefix=("bulk",))
        )


def test_import_with_a_bad_line_writes_nothing(tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    _big_export(dump, 5_000)
    with dump.open("a") as fh:
        fh.write('{"ns": ["bulk"], "key": "broken"}\n')
    target = tmp_path / "target.db"
    out = run("import", str(target), str(dump))
    assert out.returncode == 2 and "dump.jsonl:5001" in _one_clean_line(out)
    assert _bulk_rows(target) == 0


def test_import_killed_midway_leaves_none_of_the_rows(tmp_path: Path) -> None:
    import signal
    import time

    rows = 60_000
    dump = tmp_path / "dump.jsonl"
    _big_export(dump, rows)
    target = tmp_path / "target.db"
    with tieredmem.open(str(target)) as store:  # an existing store, with its own data
        store.put(("own",), "k", {"kept": True})
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tieredmem.cli", "import", str(target), str(dump)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wal = Path(str(target) + "-wal")
    deadline = time.monotonic() + 120
    # Kill once the import has written a good part of its rows to the WAL.
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if wal.stat().st_size > 2 * 2**20:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    assert proc.poll() is None, "the import finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # None of the rows, or (killed between its commit and its exit) all of them.
    assert _bulk_rows(target) in (0, rows)
    with tieredmem.open(str(target)) as store:
        assert store.get(("own",), "k").value == {"kept": True}


def test_doctor_exits_1_on_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    with tieredmem.open(str(path)) as store:
        for i in range(3_000):
            store.put(("ns", str(i % 10)), f"k{i}", {"v": "x" * 300, "i": i})
    data = bytearray(path.read_bytes())
    data[4096 * 20 : 4096 * 21] = bytes(range(256)) * 16  # one b-tree page overwritten
    path.write_bytes(bytes(data))
    out = run("doctor", str(path))
    assert out.returncode == 1, out.stderr
    assert "damaged" in out.stderr + out.stdout
    out = run("stats", str(path))
    assert out.returncode == 2 and "damaged" in _one_clean_line(out)


def _redis_servers() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "redis-server":
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def test_bench_checks_prerequisites_before_starting_anything(tmp_path: Path) -> None:
    from .test_examples import _without

    before = _redis_servers()
    results = ROOT / "benchmarks" / "results"
    tracked = {p.name: p.read_bytes() for p in results.iterdir()}
    out = _without(
        "redis", ["tieredmem.cli", "bench", "--quick", "--only", "redis_backend"], tmp_path
    )
    assert out.returncode == 2
    line = _one_clean_line(out)
    assert "Python module redis" in line and "'.[bench]'" in line
    assert _redis_servers() <= before  # no server was started (nor left running)
    assert {p.name: p.read_bytes() for p in results.iterdir()} == tracked


def test_bench_quick_writes_outside_the_source_tree(tmp_path: Path) -> None:
    results = ROOT / "benchmarks" / "results"
    tracked = {p.name: p.read_bytes() for p in results.iterdir()}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TIEREDMEM_BENCH_RESULTS"] = str(tmp_path / "quick")
    proc = subprocess.run(
        [sys.executable, "-m", "tieredmem.cli", "bench", "--quick", "--only", "agent_memory"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "quick" / "agent_memory_quick.json").exists()
    assert {p.name: p.read_bytes() for p in results.iterdir()} == tracked


def test_demo_reports_one_file_size_and_explains_its_hit_rate(tmp_path: Path) -> None:
    out = run(
        "demo", "--turns", "300", "--path", "demo.db", "--keep", "100", "--json", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    sizes = [k for k in summary if k.startswith(("cold", "file")) or k.endswith("_bytes")]
    assert sizes == ["file_mb"]
    assert summary["file_mb"] > 0 and summary["store_reads"] >= 0
    text = run("demo", "--turns", "300", "--path", "demo.db", "--keep", "100", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "hit_rate: the share of the store's reads" in text.stdout
    assert "cold_mb" not in text.stdout and "cold_bytes" not in text.stdout


def test_every_command_is_documented() -> None:
    import argparse

    from tieredmem.cli import build_parser

    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for name, command in sub.choices.items():
        assert f"`tieredmem {name}" in page, name
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help", "--json"):
                    assert option in page, f"tieredmem {name} {option}"


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    """psycopg's pool reports every failed connection on its own logger; the command says
    what failed once, in its words."""
    pytest.importorskip("psycopg_pool")
    out = run("stats", "postgresql://app:s3cretpw@127.0.0.1:1/db?pool_timeout=1")
    assert out.returncode == 2
    assert "cannot connect to PostgreSQL" in _one_clean_line(out)
    assert "s3cretpw" not in out.stderr + out.stdout


def test_search_filters_and_queries(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with tieredmem.open(path) as store:
        for i in range(30):
            kind = ("fact", "episode", "preference")[i % 3]
            store.put(
                ("users", f"u{i % 2}"), f"m{i:02d}", {"kind": kind, "score": i, "text": f"w{i}"}
            )
    flt = '{"kind": {"$in": ["fact", "preference"]}, "score": {"$gte": 20}}'
    out = run("search", str(path), "--namespace", "users/u0", "--filter", flt, "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [i["key"] for i in found] == ["m20", "m24", "m26"]
    assert found[0]["value"] == {"kind": "preference", "score": 20, "text": "w20"}
    assert found[0]["namespace"] == ["users", "u0"]
    out = run(
        "search", str(path), "--filter", '{"$or": [{"score": 3}, {"score": 4}]}', "--limit", "1"
    )
    assert out.returncode == 0 and out.stdout.splitlines() == [
        'users/u0  m04  {"kind": "episode", "score": 4, "text": "w4"}'
    ]
    out = run("search", str(path), "--filter", '{"kind": "none"}')
    assert out.returncode == 0 and out.stdout == "" and "no items" in out.stderr
    # Text: the file is opened read-only, so its full-text index must exist already.
    out = run("search", str(path), "--query", "w7")
    assert out.returncode == 2 and "search it read-write once" in _one_clean_line(out)
    with tieredmem.open(path) as store:
        store.search((), query="w1")
    out = run("search", str(path), "--query", "w7 w8", "--filter", '{"score": 8}', "--json")
    assert out.returncode == 0, out.stderr
    (hit,) = json.loads(out.stdout)
    assert hit["key"] == "m08" and hit["score"] > 0


@pytest.mark.parametrize(
    "flt, says",
    [
        ("{kind: fact}", "--filter is not JSON"),
        ('{"score": {"$regex": "x"}}', "unknown filter operator '$regex' on field 'score'"),
        ('{"kind": {"$in": "fact"}}', "$in on field 'kind' takes a list"),
        ("[1, 2]", "filter must be a mapping"),
    ],
)
def test_search_with_a_bad_filter_is_one_line_exit_2(filled: Path, flt: str, says: str) -> None:
    out = run("search", str(filled), "--filter", flt)
    assert out.returncode == 2
    assert says in _one_clean_line(out)
