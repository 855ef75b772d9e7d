"""Every example runs (twice, where a second run must recall the first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(example: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TIEREDMEM_EXAMPLE_QUICK"] = "1"
    outputs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, str(example)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    if example.stem == "quickstart":
        assert "run #1" in outputs[0] and "run #2" in outputs[1]
    if example.stem == "longterm_recall":
        assert "first run" in outputs[0] and "recalled preferences" in outputs[1]
    if example.stem == "longterm_langgraph":
        assert "don't know" in outputs[0].splitlines()[0]
        assert "You like green tea" in outputs[1].splitlines()[0]


def _without(modules: str, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run *script* (argv) where importing any of *modules* fails, as in an environment
    without the extra that installs them."""
    code = (
        "import sys, runpy\n"
        f"for name in {modules.split(',')!r}:\n"
        "    sys.modules[name] = None  # import raises ModuleNotFoundError\n"
        f"sys.argv = {script!r}\n"
        "runpy.run_path(sys.argv[0], run_name='__main__') if sys.argv[0].endswith('.py') "
        "else runpy.run_module(sys.argv[0], run_name='__main__')\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_langgraph_example_without_the_extra_names_it(tmp_path: Path) -> None:
    script = [str(ROOT / "examples" / "longterm_langgraph.py")]
    out = _without("langgraph,langgraph.config,langgraph.graph", script, tmp_path)
    assert out.returncode == 1
    assert "tieredmem[langgraph]" in out.stderr and "Traceback" not in out.stderr


def test_migrate_without_sqlitesaver_names_the_extra(tmp_path: Path) -> None:
    out = _without(
        "langgraph.checkpoint.sqlite", ["tieredmem.cli", "migrate", "a.db", "b.db"], tmp_path
    )
    assert out.returncode == 2, out.stderr
    assert "tieredmem[migrate]" in out.stderr and "Traceback" not in out.stderr
