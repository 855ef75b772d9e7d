"""The ``tieredmem`` command: each subcommand wraps a public library call.

    tieredmem demo [--turns N] [--path FILE]     a long-running agent, measured live
    tieredmem stats FILE                         what the file holds and its sizes
    tieredmem inspect FILE [--namespace NS | --history NAME | --state NAME | --thread ID]
    tieredmem search FILE [--namespace NS] [--query TEXT] [--filter JSON] [--limit N]
    tieredmem export FILE OUT.jsonl              every row, streamed (exact round trip)
    tieredmem import FILE IN.jsonl
    tieredmem compact FILE                       Store.maintain() + WAL truncation
    tieredmem doctor FILE                        integrity, format, settings, advice
    tieredmem migrate SQLITESAVER.db FILE        TieredSaver.import_from(SqliteSaver)
    tieredmem bench [--quick]                    the benchmarks of a source checkout

``--json`` (before or after the command) prints machine-readable output.  Exit codes: 0
ok, 1 a check failed (``doctor``: the file is damaged), 2 bad input (missing file, not a
store, a name the file does not hold, bad arguments), with the error on one line of
stderr.  The read commands (``stats``, ``inspect``, ``search``, ``doctor``, ``export``) never create
or change a store file.  ``rich`` (the ``cli`` extra) draws tables and progress bars;
without it the output is plain text.
"""

from __future__ import annotations

import argparse
import ast
import base64
import errno
import importlib.util
import json
import logging
import os
import resource
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from . import CorruptStoreError, MemorySaver, Retention, Store, TieredMemError, __version__
from . import open as open_store
from .backends import SEP, Put, redact_url
from .codec import JSON, RAW, dumps_json
from .history import decode_row, encode_row

__all__ = ["main"]


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


# -- output ------------------------------------------------------------------------------
def _rich() -> Any:
    try:
        import rich.console

        return rich
    except ImportError:
        return None


def _emit(args: argparse.Namespace, data: Any, title: str = "") -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return
    rich = _rich()
    if isinstance(data, dict) and rich is not None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title or None, show_header=False)
        for k, v in data.items():
            table.add_row(str(k), _fmt(v))
        Console().print(table)
        return
    if isinstance(data, dict):
        if title:
            print(title)
        width = max((len(str(k)) for k in data), default=0)
        for k, v in data.items():
            print(f"  {str(k).ljust(width)}  {_fmt(v)}")
        return
    print(data)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return str(v)


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: peak RSS is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- helpers -----------------------------------------------------------------------------
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_store_file(path: str) -> None:
    """Refuse, with one line (exit 2) and before anything opens it, a *path* that is
    missing, a directory, empty or not an SQLite file.  Creates nothing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    if stat.S_ISDIR(st.st_mode):
        raise CLIError(f"{path}: is a directory, not a store file")
    if not stat.S_ISREG(st.st_mode):
        raise CLIError(f"{path}: not a regular file, so not a tieredmem store")
    if st.st_size == 0:
        try:
            wal = os.path.getsize(path + "-wal")
        except OSError:
            wal = 0
        if wal == 0:  # a store whose pages are all still in its WAL is not empty
            raise CLIError(f"{path}: empty file, not a tieredmem store")
        return
    with open(path, "rb") as fh:
        head = fh.read(len(_SQLITE_MAGIC))
    if head != _SQLITE_MAGIC:
        raise CLIError(f"{path}: not a tieredmem store (not an SQLite file)")


def _existing(path: str) -> Store:
    """Open the store *path* for a read command (``stats``, ``inspect``, ``search``,
    ``doctor``, ``export``): every read command opens its store here, and nothing else.  A file is
    opened read-only (``readonly=True``: it is never written), after a missing, empty or
    non-store path is refused (:func:`_check_store_file`); so is a PostgreSQL URL (where
    no store exists, nothing is created: a one-line refusal); a Redis URL is opened as it
    is, without background maintenance."""
    scheme = path.split("://", 1)[0].lower() if "://" in path else ""
    if scheme in ("postgresql", "postgres"):
        return open_store(path, readonly=True)
    if scheme and scheme != "sqlite":
        return open_store(path, maintenance_interval=0)
    _check_store_file(path)
    return open_store(path, readonly=True)


def _files_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _internal(store: Store, *labels: str) -> list[str]:
    return store.raw.namespaces_under(store.raw.internal_ns(*labels))


def _exists_internal(store: Store, *labels: str) -> bool:
    ns = store.raw.internal_ns(*labels)
    return any(n == ns or n.startswith(ns + SEP) for n in store.raw.namespaces_under(ns))


def _summary(store: Store, path: str) -> dict[str, Any]:
    """What the file holds, each figure cheap: counts of namespaces come from one index
    seek per namespace (never a pass over the rows), sizes from SQLite's page counts."""
    histories = [ns for ns in _internal(store, "history") if ns.count(SEP) == 2]
    states = [ns for ns in _internal(store, "state") if ns.count(SEP) == 2]
    threads = {ns.split(SEP)[2] for ns in _internal(store, "lg") if ns.count(SEP) >= 2}
    st = store.stats()
    return {
        "file": path,
        "rows": st.cold_rows,
        "user_namespaces": len(store.list_namespaces(limit=10**9)),
        "histories": len(histories),
        "states": len(states),
        "langgraph_threads": len(threads),
        "file_bytes": st.cold_bytes,
        "free_bytes": st.cold_free_bytes,
        "wal_bytes": st.wal_bytes,
    }


# -- commands ----------------------------------------------------------------------------
def cmd_stats(args: argparse.Namespace) -> int:
    with _existing(args.file) as store:
        _emit(args, _summary(store, args.file), f"tieredmem stats {redact_url(args.file)}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    with _existing(args.file) as store:
        if args.namespace:
            labels = args.namespace.split("/")
            if not store.list_namespaces(prefix=labels, limit=1):
                raise CLIError(f"{args.file}: no namespace {args.namespace!r}")
            items = store.search(labels, limit=args.limit)
            data: Any = {
                "namespace": list(labels),
                "items": [
                    {
                        "key": i.key,
                        "namespace": list(i.namespace),
                        "bytes": len(json.dumps(i.value, default=str)),
                        "created_at": i.created_at.isoformat(),
                        "updated_at": i.updated_at.isoformat(),
                    }
                    for i in items
                ],
            }
        elif args.history:
            if not _exists_internal(store, "history", args.history):
                raise CLIError(f"{args.file}: no history {args.history!r}")
            memory = MemorySaver(store=store)
            h = memory.history(args.history)
            data = h.stats()
            if len(h):
                data["first"] = h[0]
                data["last"] = h[-1]
        elif args.state:
            if not _exists_internal(store, "state", args.state):
                raise CLIError(f"{args.file}: no state {args.state!r}")
            memory = MemorySaver(store=store)
            doc = memory.state(args.state)
            data = doc.stats()
            rows = doc.stored_rows()
            data["delta_rows"] = rows["delta_rows"]
            data["has_base"] = rows["base_rows"] > 0
            data["keys_sample"] = sorted(doc)[: args.limit]
        elif args.thread:
            root = store.raw.internal_ns("lg", args.thread)
            spaces = store.raw.namespaces_under(root)
            namespaces = {}
            for ns in spaces:
                labels = ns.split(SEP)
                if len(labels) == 4:
                    keys = store.raw.keys(ns)
                    namespaces[labels[3][1:] or "(root)"] = {
                        "checkpoints": sum(k.startswith("c") for k in keys),
                        "pending_write_sets": sum(k.startswith("w") for k in keys),
                        "channel_versions": sum(k.startswith("v") for k in keys),
                    }
            logs = [ns for ns in spaces if ns.split(SEP)[4:5] == ["log"] and ns.count(SEP) == 5]
            if not spaces:
                raise CLIError(f"{redact_url(args.file)}: no LangGraph thread {args.thread!r}")
            data = {"thread": args.thread, "namespaces": namespaces, "message_logs": len(logs)}
        else:
            data = _summary(store, args.file)
            data["namespaces"] = [list(ns) for ns in store.list_namespaces(limit=args.limit)]
            data["history_names"] = [
                ns.split(SEP)[2] for ns in _internal(store, "history") if ns.count(SEP) == 2
            ][: args.limit]
        _emit(args, data, f"tieredmem inspect {redact_url(args.file)}")
    return 0


def _progress(total: int | None, label: str) -> Any:
    rich = _rich()
    if rich is None or not sys.stderr.isatty():
        return None
    from rich.progress import Progress

    progress = Progress(transient=True, console=rich.console.Console(stderr=True))
    progress.start()
    progress.add_task(label, total=total)
    return progress


def _rows(store: Store) -> Iterator[Any]:
    backend = store.backend
    after: tuple[str, str] | None = None
    while True:
        rows = backend.scan("", after=after, limit=1000)
        yield from rows
        if len(rows) < 1000:
            return
        after = (rows[-1].ns, rows[-1].key)


def _record(row: Any, kind: int, payload: bytes) -> dict[str, Any]:
    """One export line: a JSON value as itself (``"value"``), a history row decoded
    (``"history"``, see :func:`tieredmem.history.decode_row`), other bytes as base64."""
    ns = row.ns.split(SEP)
    record: dict[str, Any] = {
        "ns": ns,
        "key": row.key,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "expires_at": row.expires_at,
        "ttl": row.ttl,
    }
    if kind == JSON:
        try:
            value = orjson.loads(payload)
            exact = dumps_json(value) == payload
        except (orjson.JSONDecodeError, TypeError):
            exact = False
        if exact:
            record["value"] = value
        else:
            record["json"] = payload.decode("utf-8")
        return record
    history = decode_row(row.key, payload) if ns[0] == "tieredmem" else None
    if history is not None:
        record["history"] = history
    else:
        record["bytes"] = base64.b64encode(payload).decode("ascii")
    return record


def _private_output(path: str) -> Any:
    """*path* opened for writing, created (or reset to) mode 0600 whatever the umask:
    an export holds every value in clear."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def cmd_search(args: argparse.Namespace) -> int:
    """``Store.search`` on a store opened read-only: a namespace prefix, a full-text query,
    a JSON filter; best matches first with a query, else in (namespace, key) order."""
    flt: Any = None
    if args.filter is not None:
        try:
            flt = json.loads(args.filter)
        except json.JSONDecodeError as exc:
            raise CLIError(f'--filter is not JSON ({exc}): e.g. \'{{"kind": "fact"}}\'') from None
    labels = [label for label in (args.namespace or "").split("/") if label]
    with _existing(args.file) as store:
        found = store.search(labels, query=args.query, filter=flt, limit=args.limit)
        rows = [
            {
                "namespace": list(i.namespace),
                "key": i.key,
                "value": i.value,
                "score": i.score,
                "created_at": i.created_at.isoformat(),
                "updated_at": i.updated_at.isoformat(),
            }
            for i in found
        ]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        score = "" if row["score"] is None else f"  score={row['score']:.3f}"
        value = json.dumps(row["value"], default=str, ensure_ascii=False)
        print(f"{'/'.join(row['namespace'])}  {row['key']}{score}  {value}")
    if not rows:
        print("no items found", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    count = 0
    with _existing(args.file) as store, _private_output(args.out) as out:
        total = store.stats().cold_rows
        progress = _progress(total, "export")
        codec = store.codec
        for row in _rows(store):
            kind, payload = codec.unframe(row.frame)
            out.write(orjson.dumps(_record(row, kind, payload)) + b"\n")
            count += 1
            if progress is not None:
                progress.advance(0)
        if progress is not None:
            progress.stop()
    _emit(args, {"exported": count, "to": args.out}, "tieredmem export")
    return 0


def _put(store: Store, r: dict[str, Any]) -> Put:
    """The row an export line describes (any form ``export`` ever wrote)."""
    codec = store.codec
    if "value" in r:
        frame = codec.frame(JSON, dumps_json(r["value"]))
    elif "json" in r:
        frame = codec.frame(JSON, r["json"].encode("utf-8"))
    elif "history" in r:
        frame = codec.frame(RAW, encode_row(r["key"], r["history"]))
    else:
        frame = codec.frame(RAW, base64.b64decode(r["bytes"], validate=True))
    return Put(
        SEP.join(r["ns"]),
        r["key"],
        frame,
        r["updated_at"],
        r["expires_at"],
        r["created_at"],
        False,
        r.get("ttl"),
    )


def cmd_import(args: argparse.Namespace) -> int:
    # All or nothing: every line is read and checked first (before the store is even
    # opened, for what can be checked without it), then the rows are written in one
    # transaction, so a bad line or a killed import leaves the store as it was.
    records: list[tuple[int, Any]] = []
    with open(args.input, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append((lineno, orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                raise CLIError(f"{args.input}:{lineno}: not a JSON line ({exc})") from None
    with open_store(args.file, maintenance_interval=0) as store:
        puts: list[Put] = []
        for lineno, record in records:
            try:
                puts.append(_put(store, record))
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise CLIError(
                    f"{args.input}:{lineno}: not a tieredmem export line ({exc})"
                ) from None
        if puts:
            store.backend.write(puts)
    _emit(args, {"imported": len(puts), "into": args.file}, "tieredmem import")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    _check_store_file(args.file)
    with open_store(args.file, maintenance_interval=0) as store:
        before = _files_size(args.file)
        memory = MemorySaver(store=store, retention=Retention())
        report = memory.maintain()
        store.backend.checkpoint("TRUNCATE")  # type: ignore[attr-defined]
        after = _files_size(args.file)
    report.update(bytes_before=before, bytes_after=after, bytes_freed=before - after)
    _emit(args, report, f"tieredmem compact {args.file}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    check = "integrity_check" if args.full else "quick_check"
    with _existing(args.file) as store:
        backend: Any = store.backend
        # quick_check reads every page once (b-tree structure, records); --full's
        # integrity_check also looks every index entry up in its table, several times
        # longer on a large file.  A spinner with the elapsed time on a terminal.
        progress = _progress(None, f"{check} of {args.file}")
        try:
            integrity = backend.integrity_check(
                full=args.full,
                progress=None if progress is None else lambda: progress.advance(0),
            )
        finally:
            if progress is not None:
                progress.stop()
        settings = backend.settings()
        stats = store.stats()
        advice = []
        if integrity != "ok":
            advice.append("the file is damaged: restore a backup, or export what still reads")
        if stats.cold_free_bytes > 0.25 * max(stats.cold_bytes, 1):
            advice.append("over a quarter of the file is free pages: run 'tieredmem compact'")
        if stats.wal_bytes > 64 * 2**20:
            advice.append("the WAL is large: a reader may be holding it; run 'tieredmem compact'")
        data = {
            "file": redact_url(args.file),
            "check": check,
            "integrity": integrity,
            "format_version": settings.pop("user_version"),
            "tieredmem": __version__,
            **{f"pragma_{k}": v for k, v in settings.items()},
            "cold_bytes": stats.cold_bytes,
            "free_bytes": stats.cold_free_bytes,
            "wal_bytes": stats.wal_bytes,
            "rows": stats.cold_rows,
            "advice": advice or ["nothing to do"],
        }
    _emit(args, data, f"tieredmem doctor {redact_url(args.file)}")
    return 0 if integrity == "ok" else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        from .langgraph import TieredSaver
    except ImportError as exc:
        raise CLIError(
            f"migrate reads SqliteSaver files with LangGraph's own reader, which is not "
            f"installed ({exc}): pip install 'tieredmem[migrate]'"
        ) from None
    if not os.path.exists(args.source):
        raise CLIError(f"{args.source}: no such file")
    conn = sqlite3.connect(f"file:{args.source}?mode=ro", uri=True, check_same_thread=False)
    started = time.perf_counter()
    with TieredSaver(args.file) as saver:
        imported = saver.import_from(SqliteSaver(conn))
    conn.close()
    _emit(
        args,
        {
            "imported_checkpoints": imported,
            "seconds": round(time.perf_counter() - started, 3),
            "source_bytes": os.path.getsize(args.source),
            "target_bytes": _files_size(args.file),
        },
        "tieredmem migrate",
    )
    return 0


def _bench_requires(script: Path) -> dict[str, list[str]]:
    """The script's ``REQUIRES`` declaration, read without running the script."""
    for node in ast.parse(script.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "REQUIRES"
            and node.value is not None
        ):
            value: dict[str, list[str]] = ast.literal_eval(node.value)
            return value
    return {}


def cmd_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    scripts = sorted(p for p in root.glob("*.py") if not p.name.startswith("_"))
    if args.only:
        available = ", ".join(p.stem for p in scripts)
        scripts = [p for p in scripts if p.stem in args.only.split(",")]
        if not scripts:
            raise CLIError(f"no benchmark named {args.only!r}; benchmarks: {available}")
    if not scripts:
        raise CLIError(
            "the benchmarks live in the source repository (benchmarks/); run this from a checkout"
        )
    # Everything every selected benchmark needs is checked before any of them starts
    # (a server, a worker), with the same check the scripts run themselves.
    spec = importlib.util.spec_from_file_location("_tieredmem_bench_common", root / "_common.py")
    if spec is None or spec.loader is None:
        raise CLIError(f"{root / '_common.py'}: cannot load the benchmarks' helpers")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    lacking = sorted({m for p in scripts for m in common.missing(_bench_requires(p))})
    if lacking:
        server = any("redis-server" in m for m in lacking)
        raise CLIError(
            f"the benchmarks need {', '.join(lacking)}: python -m pip install -e '.[bench]'"
            + (" and apt-get install redis-server" if server else "")
        )
    status = 0
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"$ {' '.join(cmd)}", flush=True)
        status |= subprocess.call(cmd)
    return 1 if status else 0


# -- the demo ------------------------------------------------------------------------------
_WORDS = (
    "agent memory tool plan search answer user question context summary note step result "
    "file email calendar meeting project deadline budget report draft review idea"
).split()


def _message(i: int) -> dict[str, Any]:
    words = [_WORDS[(i * 7 + k * 13) % len(_WORDS)] for k in range(60 + i % 40)]
    return {"role": "user" if i % 2 == 0 else "assistant", "turn": i, "content": " ".join(words)}


def cmd_demo(args: argparse.Namespace) -> int:
    path = args.path
    turns = args.turns
    rich = _rich()
    run_started = time.perf_counter()
    with MemorySaver(
        max_history=100,
        path=path,
        hot_bytes=args.hot_bytes,
        retention=Retention(max_items=args.keep, keep=lambda m: bool(m.get("pinned"))),
        durability="batch",
        maintenance_interval=0,
    ) as memory:
        facts = memory.longterm
        known = facts.get(("demo", "user"), "profile")
        runs = (known.value["runs"] if known else 0) + 1
        history = memory.history("demo-session")
        before = len(history)
        state = memory.state("demo-session")
        live = None
        if rich is not None and sys.stdout.isatty() and not args.json:
            from rich.live import Live

            live = Live(refresh_per_second=4)
            live.start()
        start_rss = _rss_mb()
        samples = []
        for i in range(turns):
            history.append(_message(before + i) | ({"pinned": True} if i == 0 else {}))
            if i % 10 == 0:
                context = history.recent(20)
                state["last_context_chars"] = sum(len(m["content"]) for m in context)
            if i % 25 == 0:
                state["turns"] = state.get("turns", 0) + 25
                state.commit()
            if i % 50 == 0:
                with memory.task("summarize") as scratch:
                    scratch["buffer"] = bytearray(512 * 1024)
            if (i + 1) % max(turns // 10, 1) == 0:
                memory.maintain()
                st = memory.stats()
                sample = {
                    "turn": i + 1,
                    "rss_mb": round(_rss_mb(), 1),
                    "hot_mb": round(st["hot_bytes"] / 2**20, 2),
                    "file_mb": round(_files_size(path) / 2**20, 2),
                    "hit_rate": round(st["hit_rate"], 3),
                    "kept": len(history),
                }
                samples.append(sample)
                if live is not None:
                    from rich.table import Table

                    table = Table(title=f"tieredmem demo: run #{runs}, {path}")
                    for col in sample:
                        table.add_column(col)
                    for s in samples:
                        table.add_row(*(str(v) for v in s.values()))
                    live.update(table)
                elif not args.json:
                    print("  ".join(f"{k}={v}" for k, v in sample.items()), flush=True)
        if live is not None:
            live.stop()
        facts.put(("demo", "user"), "profile", {"runs": runs, "last_turns": turns})
        memory.store.flush()
        raw = sum(len(json.dumps(_message(before + i))) for i in range(turns))
        st = memory.stats()
        summary = {
            "run": runs,
            "recalled_from_earlier_runs": before,
            "turns": turns,
            "seconds": round(time.perf_counter() - run_started, 2),
            "rss_start_mb": round(start_rss, 1),
            "rss_end_mb": round(_rss_mb(), 1),
            "hot_mb": round(st["hot_bytes"] / 2**20, 2),
            "messages_kept": len(history),
            "first_message_pinned": bool(history[0].get("pinned")) if len(history) else False,
            "file_mb": round(_files_size(path) / 2**20, 2),
            "messages_written_mb": round(raw / 2**20, 2),
            "store_reads": st["hits"] + st["misses"],
            "hit_rate": round(st["hit_rate"], 3),
        }
    # The same run's messages kept the way most agents keep them: a Python list.
    baseline = _list_baseline(before + turns)
    summary.update(baseline)
    _emit(args, summary, "summary (tieredmem vs a Python list of the same messages)")
    if not args.json:
        print(_DEMO_NOTES.format(**summary))
    return 0


_DEMO_NOTES = """\
file_mb: the store file and its WAL on disk, against messages_written_mb of messages
  (as JSON) appended this run; retention keeps the file bounded.
hit_rate: the share of the store's reads (store_reads: {store_reads:,}) served by its
  hot tier.  This agent reads its recent messages with history.recent(), which the
  history answers from the items it holds itself (max_history=100) without reading the
  store at all; the store is read only by maintenance and by a new run, mostly for
  chunks nobody read before, so a low hit rate here means few reads went to disk, not
  many."""


def _list_baseline(n: int) -> dict[str, Any]:
    code = (
        "import json, sys, os\n"
        "from tieredmem.cli import _message, _rss_mb\n"
        "start = _rss_mb()\n"
        f"msgs = [_message(i) for i in range({n})]\n"
        "now = _rss_mb()\n"
        "print(json.dumps({'list_rss_mb': round(now, 1),\n"
        "                  'list_growth_mb': round(now - start, 1)}))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        return {"list_rss_mb": None}
    result: dict[str, Any] = json.loads(out.stdout)
    result["list_messages"] = n
    return result


# -- entry point ---------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``tieredmem`` command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="tieredmem",
        description="Inspect, export and maintain tieredmem store files, and run the demo.",
        epilog="Exit codes: 0 ok, 1 a check failed (doctor), 2 bad input.",
    )
    parser.add_argument("--version", action="version", version=f"tieredmem {__version__}")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        # SUPPRESS: a --json before the command is not reset by the subcommand's default.
        p.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )
        p.set_defaults(func=func)
        return p

    p = add("demo", cmd_demo, "a simulated long-running agent with bounded memory")
    p.add_argument("--turns", type=_positive_int, default=100_000, help="messages to append")
    p.add_argument("--path", default="tieredmem-demo.db", help="the store file")
    p.add_argument("--hot-bytes", default="8MiB", help="hot-tier budget, e.g. 8MiB")
    p.add_argument("--keep", type=_positive_int, default=5_000, help="messages retention keeps")
    p = add("stats", cmd_stats, "what a store file holds, and its sizes")
    p.add_argument("file")
    p = add("inspect", cmd_inspect, "what a store file holds, or one thing in it")
    p.add_argument("file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--namespace", help="labels joined by '/', e.g. users/alice")
    group.add_argument("--history", help="a MemorySaver history: items, chunks")
    group.add_argument("--state", help="a MemorySaver state: keys and delta chain")
    group.add_argument("--thread", help="a LangGraph thread id")
    p.add_argument("--limit", type=_positive_int, default=50, help="most entries listed")
    p = add("search", cmd_search, "items matching a filter or a text query (read-only)")
    p.add_argument("file")
    p.add_argument("--namespace", help="a namespace prefix, labels joined by '/', e.g. users/alice")
    p.add_argument("--query", help="full-text query: best matches first")
    p.add_argument(
        "--filter", help='a JSON filter, e.g. \'{"kind": "fact", "score": {"$gte": 50}}\''
    )
    p.add_argument("--limit", type=_positive_int, default=10, help="most items listed")
    p = add("export", cmd_export, "write every row to JSON lines (file mode 0600)")
    p.add_argument("file")
    p.add_argument("out")
    p = add("import", cmd_import, "read rows written by export, all or nothing")
    p.add_argument("file")
    p.add_argument("input")
    p = add("compact", cmd_compact, "retention, expiry, vacuum, WAL truncation")
    p.add_argument("file")
    p = add("doctor", cmd_doctor, "integrity check, format, settings, advice")
    p.add_argument("file")
    p.add_argument(
        "--full",
        action="store_true",
        help="PRAGMA integrity_check (also every index against its table) instead of "
        "the default quick_check; exit status 1 when the file is damaged",
    )
    p = add("migrate", cmd_migrate, "import a LangGraph SqliteSaver file into a TieredSaver")
    p.add_argument("source")
    p.add_argument("file")
    p = add("bench", cmd_bench, "run the benchmarks (source checkout)")
    p.add_argument("--quick", action="store_true", help="small sizes; results go to a temp dir")
    p.add_argument("--only", help="comma-separated benchmark names, e.g. kv,store")
    return parser


_OS_WORDS = {
    errno.ENOENT: "no such file or directory",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EEXIST: "already exists",
}


def _one_line(exc: BaseException) -> str:
    """*exc* as one line in the command's words (OS errors without ``[Errno N]``)."""
    if isinstance(exc, OSError) and not isinstance(exc, TieredMemError) and exc.errno:
        words = _OS_WORDS.get(exc.errno, (exc.strerror or str(exc)).lower())
        text = f"{exc.filename}: {words}" if exc.filename else words
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _route_logs() -> None:
    """tieredmem's own warnings (a server being retried) go to stderr, one line each;
    other libraries' (psycopg's pool reporting every failed connection) do not: the
    command's one-line error says what failed.  Left alone where the embedding program
    configured logging itself."""
    root = logging.getLogger()
    if root.handlers:
        return
    root.addHandler(logging.NullHandler())
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("tieredmem: %(message)s"))
    logging.getLogger("tieredmem").addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tieredmem`` command; return its exit code (0 ok, 1 a check failed, 2 bad
    input, each error one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _route_logs()
    try:
        return int(args.func(args))
    except (CLIError, TieredMemError, OSError) as exc:
        print(f"tieredmem {args.command}: {_one_line(exc)}", file=sys.stderr)
        # A damaged file is what doctor checks for: its check failed (1), not the input.
        return 1 if isinstance(exc, CorruptStoreError) and args.command == "doctor" else 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
