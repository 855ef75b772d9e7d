"""Faults become typed errors that say what to do (#15): read-only files, directories and
mounts, a full disk, a truncated file, damaged values and bit rot; and readonly=True."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import tieredmem

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _make_store(path: str) -> None:
    with tieredmem.open(path) as store:
        store.put_many([(("docs", "a"), f"k{i}", {"i": i, "text": f"word{i}"}) for i in range(50)])
        store.put(("docs", "b"), "blob", b"\x00\x01")
        store.search(("docs",), query="word3")  # builds the full-text index


# -- readonly=True ------------------------------------------------------------------------
def test_readonly_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "ro.db")
    _make_store(path)
    before = _digest(path)
    with tieredmem.open(path, readonly=True) as store:
        assert store.get(("docs", "a"), "k3").value == {"i": 3, "text": "word3"}
        assert [i.value for i in store.get_many([(("docs", "b"), "blob")])] == [b"\x00\x01"]
        assert len(store.search(("docs",), filter={"i": {"$lt": 5}}, limit=100)) == 5
        assert [i.key for i in store.search(("docs",), query="word7")] == ["k7"]
        assert store.list_namespaces() == [("docs", "a"), ("docs", "b")]
        assert store.stats().cold_rows == 51
        assert store.backend.integrity_check() == "ok"  # type: ignore[attr-defined]
        for write in (
            lambda: store.put(("docs", "a"), "k1", 1),
            lambda: store.delete(("docs", "a"), "k1"),
            lambda: store.put_many([(("x",), "y", 1)]),
            store.maintain,
            store.sweep,
        ):
            with pytest.raises(tieredmem.ReadOnlyError, match="readonly=True"):
                write()
        with pytest.raises(tieredmem.ReadOnlyError), store.transaction():
            pass
    assert _digest(path) == before  # the database file was not changed
    with tieredmem.open(path) as store:
        assert store.get(("docs", "a"), "k1").value == {"i": 1, "text": "word1"}


def test_readonly_batch_store_refuses_at_the_call(tmp_path: Path) -> None:
    path = str(tmp_path / "rob.db")
    _make_store(path)
    with (
        tieredmem.open(path, readonly=True, durability="batch") as store,
        pytest.raises(tieredmem.ReadOnlyError),
    ):
        store.put(("a",), "k", 1)  # not later, at a flush


def test_readonly_sees_a_live_writers_commits(tmp_path: Path) -> None:
    path = str(tmp_path / "live.db")
    with tieredmem.open(path) as writer:
        writer.put(("a",), "k", 1)
        with tieredmem.open(path, readonly=True) as reader:
            assert reader.get(("a",), "k").value == 1
            writer.put(("a",), "k", 2)
            assert reader.get(("a",), "k").value == 2


def test_readonly_refuses_a_missing_or_empty_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.db")
    with pytest.raises(tieredmem.CannotOpenError, match="does not exist"):
        tieredmem.open(missing, readonly=True)
    assert not os.path.exists(missing)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(tieredmem.NotAStoreError, match="readonly=True"):
        tieredmem.open(str(empty), readonly=True)
    assert sorted(os.listdir(tmp_path)) == ["empty.db"]


def test_readonly_history_and_state_reads(tmp_path: Path) -> None:
    path = str(tmp_path / "mem.db")
    with tieredmem.MemorySaver(path=path, persistent=True) as memory:
        memory.history("s").extend([{"n": i} for i in range(30)])
        doc = memory.state("s")
        doc["a"] = 1
        doc.commit()
    store = tieredmem.open(path, readonly=True)
    with tieredmem.MemorySaver(store=store) as memory:
        assert list(memory.history("s")) == [{"n": i} for i in range(30)]
        assert memory.state("s")["a"] == 1
    store.close()


# -- read-only directories, files and mounts (need root to set up for real) -----------------
NOBODY = """
import json, os, sys
import tieredmem, tieredmem.backends.sqlite  # first: the interpreter may be private to root
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {}
try:
    with tieredmem.open(sys.argv[1]) as store:
        out["rw"] = store.get(("docs", "a"), "k1").value
except tieredmem.TieredMemError as exc:
    out["rw_error"] = [type(exc).__name__, str(exc)]
except Exception as exc:
    out["rw_raw"] = [type(exc).__module__ + "." + type(exc).__name__, str(exc)]
with tieredmem.open(sys.argv[1], readonly=True) as store:
    out["ro"] = store.get(("docs", "a"), "k1").value
    out["ro_search"] = len(store.search(("docs",), limit=100))
try:
    tieredmem.open(os.path.join(os.path.dirname(sys.argv[1]), "new.db"))
except tieredmem.TieredMemError as exc:
    out["new_error"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the ``nobody`` user can enter (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges to nobody needs root")
    path = Path(tempfile.mkdtemp(prefix="tieredmem-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _as_nobody(path: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NOBODY), str(path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_read_only_directory_as_another_user(shared_dir: Path) -> None:
    """A store in a directory the user cannot write: a typed error saying to use
    readonly=True, which then reads it without creating anything."""
    path = shared_dir / "store.db"
    _make_store(str(path))
    path.chmod(0o644)
    before = sorted(os.listdir(shared_dir))
    out = _as_nobody(path)
    assert "rw_raw" not in out, out
    kind, message = out["rw_error"]  # type: ignore[misc]
    assert kind in ("CannotOpenError", "ReadOnlyError"), out
    assert "readonly=True" in message
    assert out["ro"] == {"i": 1, "text": "word1"} and out["ro_search"] == 51
    assert out["new_error"][0] == "CannotOpenError", out  # type: ignore[index]
    assert sorted(os.listdir(shared_dir)) == before == ["store.db"]


def test_read_only_file_as_another_user(shared_dir: Path) -> None:
    path = shared_dir / "store.db"
    _make_store(str(path))
    path.chmod(0o444)
    shared_dir.chmod(0o777)  # the directory is writable: only the file is not
    out = _as_nobody(path)
    assert out.get("rw_error", [None])[0] == "ReadOnlyError", out  # type: ignore[index]
    assert "readonly=True" in out["rw_error"][1]  # type: ignore[index]
    assert out["ro"] == {"i": 1, "text": "word1"}


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """A small real tmpfs mount (skipped where mounting is not permitted)."""
    path = Path(tempfile.mkdtemp(prefix="tieredmem-tmpfs-"))
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        path.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def test_read_only_mount(tmpfs: Path) -> None:
    path = str(tmpfs / "store.db")
    _make_store(path)
    _remount(tmpfs, "ro")
    with pytest.raises((tieredmem.CannotOpenError, tieredmem.ReadOnlyError), match="readonly"):
        tieredmem.open(path)
    with tieredmem.open(path, readonly=True) as store:
        assert store.get(("docs", "a"), "k1").value == {"i": 1, "text": "word1"}
        assert store.stats().cold_rows == 51
        with pytest.raises(tieredmem.ReadOnlyError):
            store.put(("a",), "k", 1)
    assert os.listdir(tmpfs) == ["store.db"]


def test_full_disk(tmpfs: Path) -> None:
    """Writing past a full disk: DiskFullError, nothing of the failed call stored, the
    store still reads; a new store on a full disk: DiskFullError."""
    path = str(tmpfs / "store.db")
    store = tieredmem.open(path, maintenance_interval=0)
    written = 0
    with pytest.raises(tieredmem.DiskFullError, match="disk is full"):
        while True:
            store.put_many([(("fill",), f"k{written}-{j}", os.urandom(2000)) for j in range(8)])
            written += 1
    assert written > 0
    assert store.get(("fill",), f"k{written}-0") is None  # the failed batch: not stored
    assert store.get(("fill",), "k0-0") is not None
    store.close()
    fd = os.open(tmpfs / "filler", os.O_CREAT | os.O_WRONLY)  # what the close freed, too
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(tieredmem.DiskFullError):
        tieredmem.open(str(tmpfs / "new.db"))


# -- damaged files and values ---------------------------------------------------------------
def test_truncated_store_is_corrupt_with_a_way_to_recover(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    with tieredmem.open(path) as store:
        store.put_many([(("a",), f"k{i}", {"pad": "x" * 500, "i": i}) for i in range(400)])
    size = os.path.getsize(path)
    for cut in (size // 2, 60):
        os.truncate(path, cut)
        with pytest.raises(tieredmem.CorruptStoreError) as info, tieredmem.open(path) as store:
            store.search(("a",), limit=1000)
        assert not isinstance(info.value, tieredmem.NotAStoreError)
        assert "restore a backup" in str(info.value) and "doctor" in str(info.value)


def _rot(path: str, where: str = "k1", offset: int = -1) -> None:
    """Flip one bit of stored values (the key *where*, or every key when "*"), as bit rot
    on disk would, through SQLite."""
    con = apsw.Connection(path)
    rows = list(con.execute("SELECT ns, key, value FROM items"))
    for ns, key, frame in rows:
        if where == "*" or key == where:
            frame = bytearray(frame)
            frame[offset] ^= 0x04
            con.execute(
                "UPDATE items SET value = ? WHERE ns = ? AND key = ?", (bytes(frame), ns, key)
            )
    con.close()


@pytest.mark.parametrize("value", [{"lang": "fr"}, "a small string", 42, b"raw", "x" * 5000])
def test_bit_rot_in_a_value_is_detected_on_every_read_path(tmp_path: Path, value: object) -> None:
    path = str(tmp_path / "rot.db")
    with tieredmem.open(path) as store:
        store.put(("users", "alice"), "k1", value)
        store.put(("users", "alice"), "k2", "fine")
    _rot(path)
    with tieredmem.open(path, hot_bytes=1) as store:
        reads = (
            lambda: store.get(("users", "alice"), "k1"),
            lambda: store.get_many([(("users", "alice"), "k1")]),
            lambda: store.search(("users",), limit=10),
        )
        for read in reads:
            with pytest.raises(tieredmem.CorruptStoreError, match=r"\('users', 'alice'\).*'k1'"):
                read()
        assert store.get(("users", "alice"), "k2").value == "fine"
        assert store.backend.integrity_check() == "ok"  # type: ignore[attr-defined]
        report = store.backend.integrity_check(full=True)  # type: ignore[attr-defined]
        assert "('users', 'alice')" in report and "'k1'" in report and "'k2'" not in report


def test_damaged_json_of_an_old_frame_is_one_typed_error(tmp_path: Path) -> None:
    """A frame of the first format (no checksum) whose JSON is damaged: the same typed
    error on every read path, never orjson's."""
    path = str(tmp_path / "old.db")
    with tieredmem.open(path) as store:
        store.put(("a",), "k", {"x": 1})
        store.put(("a",), "s", "scalar")
    con = apsw.Connection(path)
    con.execute("UPDATE items SET value = ? WHERE key = 'k'", (b'\x01{"x": 1',))
    con.execute("UPDATE items SET value = ? WHERE key = 's'", (b'\x01"scal',))
    con.close()
    with tieredmem.open(path, hot_bytes=1) as store:
        for key in ("k", "s"):
            for read in (
                lambda k=key: store.get(("a",), k),
                lambda k=key: store.get_many([(("a",), k)]),
                lambda: store.search(("a",), limit=10),
                lambda k=key: store.raw.read_values("a", [k]),
            ):
                with pytest.raises(tieredmem.CorruptValueError, match="damaged"):
                    read()


def test_bit_rot_in_histories_and_states(tmp_path: Path) -> None:
    path = str(tmp_path / "mem.db")
    with tieredmem.MemorySaver(path=path, persistent=True, max_history=5) as memory:
        memory.history("s").extend([{"n": i} for i in range(40)])
        doc = memory.state("s")
        doc["a"] = {"deep": [1, 2, 3]}
        doc.commit()
    _rot(path, "*")
    with tieredmem.MemorySaver(path=path, persistent=True, max_history=5) as memory:
        with pytest.raises(tieredmem.CorruptValueError):
            list(memory.history("s"))
        with pytest.raises(tieredmem.CorruptValueError):
            memory.state("s")["a"]


CRASHING_WRITER = """
import os, sys, tieredmem
store = tieredmem.open(sys.argv[1], wal_bytes="1GiB")
store.put_many([(("a",), f"k{i}", {"i": i}) for i in range(100)])
os._exit(0)  # killed: the commits stay in -wal, never checkpointed
"""


def test_read_only_mount_with_a_crashed_writers_wal(tmpfs: Path) -> None:
    """A copy of a live store (or a snapshot mount) whose commits are still in -wal:
    readonly=True reads them without writing anything."""
    path = str(tmpfs / "store.db")
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASHING_WRITER), path], check=True, env=_env()
    )
    assert os.path.getsize(path + "-wal") > 0
    _remount(tmpfs, "ro")
    with tieredmem.open(path, readonly=True) as store:
        assert store.get(("a",), "k99").value == {"i": 99}
        assert store.stats().cold_rows == 100
    with pytest.raises(tieredmem.ReadOnlyError, match="readonly=True"):
        tieredmem.open(path)
