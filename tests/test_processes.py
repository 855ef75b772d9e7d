"""Real subprocesses: SIGKILL during sync writes, several processes on one file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tieredmem

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


WRITER = """
import sys, tieredmem
store = tieredmem.open(sys.argv[1], durability="sync", hot_bytes="1MiB")
i = 0
while True:
    store.put(("crash",), f"k{i:06d}", {"i": i, "pad": "x" * (i % 500)})
    print(i, flush=True)   # acknowledged: put() returned
    i += 1
"""


@pytest.mark.parametrize("run", range(3))
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, run: int) -> None:
    path = str(tmp_path / "crash.db")
    proc = subprocess.Popen(_python(WRITER, path), stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 300 + 200 * run:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Whatever else the child printed before dying was acknowledged too.
    for line in proc.stdout:
        acked = max(acked, int(line))
    with tieredmem.open(path) as store:
        assert store.backend.integrity_check() == "ok"  # type: ignore[attr-defined]
        found = {i.key for i in store.search(("crash",), limit=10**6)}
        missing = [i for i in range(acked + 1) if f"k{i:06d}" not in found]
        assert not missing, f"lost acknowledged writes: {missing[:10]}"


HISTORY_WRITER = """
import sys, tieredmem
memory = tieredmem.MemorySaver(path=sys.argv[1], chunk_items=7, hot_bytes="1MiB")
h = memory.history("chat")
i = len(h)
while True:
    h.append({"i": i, "pad": "y" * (i % 300)})
    print(i, flush=True)   # acknowledged: append() returned
    i += 1
"""


@pytest.mark.parametrize("run", range(2))
def test_sigkill_during_history_appends_loses_nothing_acknowledged(
    tmp_path: Path, run: int
) -> None:
    """Appends reuse tail slots and seal them into chunks every 7 items: a kill at any
    point leaves every acknowledged item, once each and in order."""
    path = str(tmp_path / "chat.db")
    acked = -1
    for round_ in range(2):  # the second child continues the history the first left
        proc = subprocess.Popen(
            _python(HISTORY_WRITER, path), stdout=subprocess.PIPE, text=True, env=_env()
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            acked = int(line)
            if acked >= (round_ + 1) * (150 + 90 * run):
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for line in proc.stdout:
            acked = max(acked, int(line))
    with tieredmem.MemorySaver(path=path, chunk_items=7) as memory:
        assert memory.store.backend.integrity_check() == "ok"  # type: ignore[attr-defined]
        items = [item["i"] for item in memory.history("chat")]
    # One append may have committed without its acknowledgement being printed.
    assert items[: acked + 1] == list(range(acked + 1))
    assert items == list(range(len(items))) and len(items) <= acked + 2


WORKER = """
import json, random, sys, tieredmem
path, wid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(wid)
store = tieredmem.open(path, hot_bytes="64KiB", busy_timeout=120)
mine = {}
for op in range(n):
    r = rng.random()
    key = f"k{rng.randrange(200)}"
    if r < 0.5:
        store.put(("w", str(wid)), key, {"op": op, "w": wid})
        mine[key] = op
    elif r < 0.6:
        store.delete(("w", str(wid)), key)
        mine.pop(key, None)
    elif r < 0.7:
        with store.transaction():
            store.put(("shared",), f"w{wid}-{op}", op)
            store.put(("w", str(wid)), key, {"op": op, "w": wid})
        mine[key] = op
    elif r < 0.75:
        store.search(("shared",), limit=5)
    else:
        item = store.get(("w", str(wid)), key)
        assert (item.value["op"] if item else None) == mine.get(key), (key, item, mine.get(key))
store.close()
print(json.dumps(mine))
"""


def test_four_processes_one_file(tmp_path: Path, stress: bool) -> None:
    path = str(tmp_path / "mp.db")
    n = 10_000 if stress else 1_000
    tieredmem.open(path).close()
    procs = [
        subprocess.Popen(
            _python(WORKER, path, str(w), str(n)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for w in range(4)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "locked" not in err
        results.append(json.loads(out))
    with tieredmem.open(path) as store:
        for wid, mine in enumerate(results):
            stored = {i.key: i.value["op"] for i in store.search(("w", str(wid)), limit=10**6)}
            assert stored == mine
        assert store.backend.integrity_check() == "ok"  # type: ignore[attr-defined]


def test_write_in_one_process_visible_to_the_others_next_read(tmp_path: Path) -> None:
    path = str(tmp_path / "vis.db")
    with tieredmem.open(path, hot_bytes="1MiB") as store:
        store.put(("a",), "k", "old")
        for _ in range(3):
            item = store.get(("a",), "k")  # now hot
            assert item is not None and item.value == "old"
        for value in ("new", "newer"):
            subprocess.run(
                _python(
                    "import sys, tieredmem\n"
                    "with tieredmem.open(sys.argv[1]) as s: s.put(('a',), 'k', sys.argv[2])",
                    path,
                    value,
                ),
                check=True,
                env=_env(),
            )
            item = store.get(("a",), "k")
            assert item is not None and item.value == value
        subprocess.run(
            _python(
                "import sys, tieredmem\n"
                "with tieredmem.open(sys.argv[1]) as s: s.delete(('a',), 'k')",
                path,
            ),
            check=True,
            env=_env(),
        )
        assert store.get(("a",), "k") is None


def test_import_tieredmem_imports_no_extra() -> None:
    code = (
        "import sys, tieredmem\n"
        "extras = ('langgraph', 'redis', 'psycopg', 'psycopg_pool', 'rich', 'numpy', 'pickle')\n"
        "bad = [m for m in extras if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run(_python(code), capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.strip() in ("", "pickle"), out.stdout


def test_import_tieredmem_stays_light(tmp_path: Path) -> None:
    """An edge agent pays for what it uses: asyncio (with ssl), OpenSSL's hashlib and
    ctypes load only with the features that need them (about 9 MB of RSS)."""
    code = (
        "import sys, tieredmem\n"
        "heavy = ('asyncio', 'ssl', '_hashlib', 'ctypes', 'tempfile', 'concurrent.futures')\n"
        "m = tieredmem.MemorySaver(persistent=True, path=sys.argv[1])\n"
        "m.history('chat').append({'role': 'user', 'content': 'hi'})\n"
        "m.longterm.put(('prefs',), 'tone', {'v': 'brief'})\n"
        "m.close()\n"
        "print(','.join(x for x in heavy if x in sys.modules))"
    )
    out = subprocess.run(
        _python(code, str(tmp_path / "m.db")),
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    assert out.stdout.strip() == "", out.stdout


def test_fork_safe(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    path = str(tmp_path / "fork.db")
    store = tieredmem.open(path)
    store.put(("a",), "parent", 1)
    pid = os.fork()
    if pid == 0:  # child: uses its own connection
        try:
            store.put(("a",), "child", 2)
            os._exit(0 if store.get(("a",), "parent") is not None else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get(("a",), "child") is not None
    store.close()
