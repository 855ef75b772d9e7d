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
