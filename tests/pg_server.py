"""A private PostgreSQL server for the tests and benchmarks (Debian's ``postgresql``).

``initdb`` runs in a temporary directory as an unprivileged user (PostgreSQL refuses to
run as root: when the tests run as root, the ``postgres`` system user the Debian package
creates owns the directory and runs the server), on a free loopback port, with its unix
socket in that directory.  :meth:`PgServer.stop` stops it; :meth:`PgServer.remove` also
deletes the directory.  :func:`find_binaries` returns ``None`` (the caller skips) where
the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable

__all__ = ["PgServer", "find_binaries"]

#: Why the PostgreSQL tests are skipped where the server is not installed.
MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql "
    "(.ci/apt-packages installs it in CI)"
)


def find_binaries() -> str | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest Debian version first)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(os.path.dirname(found))
    for directory in candidates:
        if all(os.access(os.path.join(directory, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demote(user: str) -> Callable[[], None] | None:
    """A ``preexec_fn`` that drops root to *user* (``None`` when not root)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)

    def demote() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote


class PgServer:
    """A throwaway PostgreSQL cluster on ``127.0.0.1:<port>``, user ``postgres``, no password.

    :param bindir: where ``initdb``/``pg_ctl`` live (see :func:`find_binaries`).
    :param durable: keep ``fsync`` on (benchmarks); the tests turn it off for speed (a
        killed server still loses nothing it acknowledged: the OS keeps the pages).
    """

    def __init__(self, bindir: str, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="tieredmem-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self._preexec = _demote("postgres")
        if self._preexec is not None:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        os.chmod(self.dir, 0o700)
        self._run(
            "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.dir}'",
            "max_connections": "100",
            "shared_buffers": "32MB",
            "fsync": "on" if durable else "off",
            "full_page_writes": "on" if durable else "off",
            "logging_collector": "off",
        }
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as fh:
            for name, value in settings.items():
                fh.write(f"{name} = {value}\n")
        self.start()

    def _run(self, binary: str, *args: str) -> None:
        subprocess.run(
            [os.path.join(self.bindir, binary), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=self._preexec,
            cwd=self.dir,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")

    def pid(self) -> int:
        """The postmaster's process id."""
        with open(os.path.join(self.data, "postmaster.pid")) as fh:
            return int(fh.readline())

    def kill(self) -> None:
        """Kill the server the hard way (SIGKILL to the postmaster and its children):
        no shutdown checkpoint, clients see their connections drop mid-statement."""
        pid = self.pid()
        children = subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        os.kill(pid, signal.SIGKILL)
        for child in children:
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        # The shared memory segment goes when the last child does; the pid file stays
        # (the next start sees a dead postmaster and recovers from the WAL).

    def stop(self) -> None:
        """Stop the server (fast shutdown); no error if it is not running."""
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            subprocess.run(
                [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=self._preexec,
            )

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, **query: str) -> str:
        """A ``postgresql://`` URL of database ``postgres``, with *query* parameters
        (a fresh ``table_prefix`` by default, so each caller gets its own tables)."""
        query.setdefault("table_prefix", f"t{uuid.uuid4().hex[:10]}_")
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?{params}"

    def dsn(self) -> str:
        """A plain libpq connection string (for other clients, e.g. PostgresSaver)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
