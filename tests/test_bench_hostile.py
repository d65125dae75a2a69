"""bench/hostile.py --quick in CI: each class of hostile input stalls the kernel loop at most 100 ms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench() -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "hostile.py"), "--quick"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # one JSON object, nothing else
    result: dict[str, Any] = json.loads(lines[0])
    return result


@pytest.mark.slow
def test_hostile_inputs_never_stall_the_kernel_loop() -> None:
    result = bench()
    classes = result["classes"]
    assert set(classes) >= {"lorebook", "macros", "appraisal", "scripted_rule", "chat_speakers", "chat_import",
                            "charx_bomb"}
    assert not [name for name, c in classes.items() if "error" in c], classes
    late = [name for name, c in classes.items() if not c["ok"]]
    if late:  # two cores shared by many processes: a stall can be the machine's. Measure once more.
        again = bench()["classes"]
        late = [name for name in late if not again[name]["ok"]]
        classes = {name: again[name] if name in late else c for name, c in classes.items()}
    assert not late, {name: classes[name] for name in late}
    assert all(c["stall_ms"] <= result["goal_ms"] for c in classes.values())
    assert all(c["peak_mb"] < 400 for c in classes.values()), classes
