"""``from tieredmem.langgraph import MemorySaver``: LangGraph's name, a bounded checkpointer
(#14), and the defaults every saver shares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langgraph")

from langgraph.checkpoint.base import BaseCheckpointSaver

import tieredmem
from tieredmem.langgraph import MemorySaver, TieredSaver

from .test_langgraph_saver import contents, run_chat

ROOT = Path(__file__).resolve().parents[1]


def test_it_is_a_checkpointer_a_graph_accepts(tmp_path: Path) -> None:
    with MemorySaver(max_history=100, persistent=True, path=tmp_path / "g.db") as saver:
        assert isinstance(saver, TieredSaver) and isinstance(saver, BaseCheckpointSaver)
        graph, config = run_chat(saver, 3)
        assert contents(graph.get_state(config))[-1].startswith("reply")


def test_persistent_defaults_to_the_same_file_as_the_agent_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with MemorySaver(max_history=100, persistent=True) as saver:
        run_chat(saver, 2)
    assert (tmp_path / "tieredmem.db").exists()
    # A new process (a restart) finds the conversation.
    code = (
        "from tieredmem.langgraph import MemorySaver\n"
        "with MemorySaver() as s:\n"
        "    print(len(list(s.list({'configurable': {'thread_id': 't1'}}))))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 0
    with tieredmem.MemorySaver() as memory:  # the agent memory's default: the same file
        assert memory.store.url.endswith(str(tmp_path / "tieredmem.db"))


def test_tiered_saver_default_is_that_file_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with TieredSaver() as saver:
        assert saver.store.url == f"sqlite:///{tmp_path / 'tieredmem.db'}"
        run_chat(saver, 1)
    with TieredSaver() as saver:  # state not lost at exit
        assert list(saver.list({"configurable": {"thread_id": "t1"}}))


def test_not_persistent_is_a_private_temp_file_removed_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    saver = MemorySaver(max_history=10, persistent=False)
    path = Path(saver.store.url[len("sqlite:///") :])
    run_chat(saver, 2)
    assert path.exists() and path.parent.stat().st_mode & 0o777 == 0o700
    assert list(tmp_path.iterdir()) == []  # nothing in the working directory
    saver.close()
    saver.close()  # idempotent
    assert not path.parent.exists()


def test_max_history_bounds_checkpoints_per_thread(tmp_path: Path) -> None:
    with MemorySaver(max_history=4, path=tmp_path / "g.db") as saver:
        graph, config = run_chat(saver, 20)
        # 20 turns write ~60 checkpoints; the newest 4 are kept, with the ancestors they
        # need, trimmed once a thread runs a quarter (at least 1) over.
        assert 4 <= len(list(saver.list(config))) <= 6
        saver.maintain()
        assert 4 <= len(list(saver.list(config))) <= 6
        assert len(contents(graph.get_state(config))) == 40  # the newest is complete


def test_path_is_refused_without_persistence() -> None:
    with pytest.raises(ValueError, match="persistent=False"):
        MemorySaver(persistent=False, path="x.db")
