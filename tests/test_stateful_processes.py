"""The shared-file state machine with one of its two processes a real child process.

tests/test_stateful.py's SharedFile drives two ``Proc`` views of one file against one
model.  Here ``Proc`` 1 is a child process running the same ``Proc`` class (its source is
sent to ``python -c``), commanded through JSON lines on stdin and answering on stdout, so
the two handles differ in PID, connections and memory like two real agents' processes.
"""

from __future__ import annotations

import inspect
import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis.stateful import precondition, rule, run_state_machine_as_test

from .test_stateful import (
    HOT_SIZES,
    MACHINES,
    Proc,
    SharedFile,
    shared_file_settings,
    with_hot_bytes,
)

ROOT = Path(__file__).resolve().parents[1]
REPLY_TIMEOUT = 120.0  # seconds; a child that takes longer is stuck (e.g. a lock wait)


def encode(value: Any) -> Any:
    """JSON for the values the machine uses: bytes are tagged, tuples become lists."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:  # the machine's dict values only use keys x, y, role...
            return bytes.fromhex(value["$bytes"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


# The child: the very Proc class the local side uses, behind a JSON-lines loop.  A call
# that raises answers with its traceback and the loop goes on; EOF on stdin ends it.
DRIVER = "\n".join(
    [
        "from __future__ import annotations",
        "import json, sys, traceback",
        "from typing import Any",
        "import tieredmem",
        inspect.getsource(Proc),
        inspect.getsource(encode),
        inspect.getsource(decode),
        "proc = Proc(sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]))",
        "print(json.dumps({'ok': None}), flush=True)",
        "for line in sys.stdin:",
        "    cmd = json.loads(line)",
        "    try:",
        "        reply = {'ok': encode(getattr(proc, cmd['op'])(*decode(cmd['args'])))}",
        "    except BaseException:",
        "        reply = {'error': traceback.format_exc()}",
        "    print(json.dumps(reply), flush=True)",
    ]
)


class ChildError(Exception):
    """A call in the child raised (the message is its traceback)."""


class ChildProc:
    """A ``Proc`` in a child process: every method call is one JSON round trip."""

    def __init__(self, path: str, hot_bytes: int | str, now: float) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._child = subprocess.Popen(
            [sys.executable, "-c", DRIVER, path, json.dumps(hot_bytes), repr(now)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self._reply("start")

    def _reply(self, op: str) -> Any:
        out: IO[str] | None = self._child.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], REPLY_TIMEOUT)
        line = out.readline() if ready else ""
        if not line:
            self._child.kill()
            self._child.wait()
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")
            why = "died" if ready else f"did not answer in {REPLY_TIMEOUT:.0f}s"
            raise ChildError(f"child {why} during {op}:\n{err}")
        reply = json.loads(line)
        if "error" in reply:
            raise ChildError(f"{op} in the child raised:\n{reply['error']}")
        return decode(reply["ok"])

    def _call(self, op: str, args: tuple[Any, ...]) -> Any:
        stdin = self._child.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, "args": encode(args)}) + "\n")
        stdin.flush()
        return self._reply(op)

    def __getattr__(self, op: str) -> Any:
        if op.startswith("_"):
            raise AttributeError(op)
        return lambda *args: self._call(op, args)

    def close(self) -> None:
        try:
            if self._child.poll() is None:
                self._call("close", ())
        finally:
            if self._child.stdin is not None:
                self._child.stdin.close()
            try:
                self._child.wait(10)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
            if self._child.stdout is not None:
                self._child.stdout.close()
            self._stderr.close()


class WithChild(SharedFile):
    """Proc 0 in this process, Proc 1 in a child process."""

    def make_procs(self) -> list[Any]:
        return [
            Proc(self.path, self.hot_bytes, self.now),
            ChildProc(self.path, self.hot_bytes, self.now),
        ]

    restarted = False

    # Once per example: starting a child costs ~0.1 s.
    @precondition(lambda self: not self.restarted)
    @rule()
    def restart_child(self) -> None:
        """The child exits and another process (another PID) takes its place."""
        self.restarted = True
        self.procs[1].close()
        self.procs[1] = ChildProc(self.path, self.hot_bytes, self.now)


def with_child(base: type[SharedFile]) -> type[SharedFile]:
    return type(f"{base.__name__}WithChild", (WithChild, base), {})


@pytest.mark.parametrize("hot_bytes", HOT_SIZES)
@pytest.mark.parametrize("base", MACHINES)
def test_handle_and_child_process_one_file(
    base: type[SharedFile], hot_bytes: int | str, stress: bool
) -> None:
    """A handle here and one in another process on one file behave like one store."""
    machine = with_hot_bytes(with_child(base), hot_bytes)
    # Starting a child costs ~0.1 s: fewer examples than the in-process machine.
    run_state_machine_as_test(machine, settings=shared_file_settings(stress, examples=15))
