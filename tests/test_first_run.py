"""A new user's first run: nothing printed is lost while models load, clean exits, quiet loads, `now()`.

These run the real `tobio-shell` and Python in subprocesses on the embedded model, as a user would.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shell.testing import shell_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHELL = [sys.executable, "-m", "shell.app"]


def run_shell(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**shell_env(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*SHELL, "--config", str(ROOT / "configs" / "kernel.yaml"), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_no_output_is_lost_while_the_embedded_model_loads(tmp_path: Path) -> None:
    """The post wakes tobio, whose model loads while the next 40 queries print their results."""
    script = tmp_path / "lost.tsh"
    lines = ["channel post lobby hello tobio"] + [f"sql SELECT {i} AS n;" for i in range(1, 41)] + ["wait --timeout 240"]
    script.write_text("\n".join(lines) + "\n")
    done = run_shell(tmp_path, "--json", str(script))
    assert done.returncode == 0, done.stderr
    results = [int(n) for n in re.findall(r'"n": (\d+)', done.stdout)]
    assert results == list(range(1, 41)), f"printed {len(results)} of 40 results:\n{done.stdout[-2000:]}"


def test_model_loads_leave_stderr_clean(tmp_path: Path) -> None:
    """Neither llama.cpp's log nor sentence-transformers' 'Loading weights' bar leaks into a script."""
    done = run_shell(tmp_path, "-c", "channel post lobby hello tobio\nwait --timeout 240\nmemory search tobio hello")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", f"loading leaked to stderr:\n{done.stderr[-2000:]}"  # nothing at all


def test_wait_covers_the_first_reply_while_the_model_loads(tmp_path: Path) -> None:
    """`wait` returns only after tobio has answered, even though its model was not loaded yet."""
    done = run_shell(tmp_path, "--json", "-c", "channel post lobby hello tobio\nwait --timeout 240\n"
                     "sql SELECT count(*) AS said FROM messages m JOIN agents a ON a.id = m.agent_id "
                     "WHERE a.name = 'tobio';")
    assert done.returncode == 0, done.stderr
    assert re.search(r'"said": 1\b', done.stdout), done.stdout[-2000:]


def test_sql_now_returns_a_timestamp(tmp_path: Path) -> None:
    """DuckDB hands TIMESTAMPTZ values to Python through pytz, which must be installed."""
    done = run_shell(tmp_path, "--json", "-c", "sql SELECT now() AS t;")
    assert done.returncode == 0, done.stderr
    assert re.search(r'"t": "\d{4}-\d\d-\d\d', done.stdout), done.stdout


def test_a_script_using_ask_exits_cleanly(tmp_path: Path) -> None:
    """The kernel is closed before the interpreter stops its thread pools: no traceback at exit."""
    code = (
        "from tobio.jupyter import ask, configure\n"
        f"configure({str(ROOT / 'configs' / 'kernel.yaml')!r})\n"
        "print('REPLY:', ask('echo', 'hello'))\n"
    )
    env = {**shell_env(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "REPLY: " in done.stdout
    assert "Traceback" not in done.stderr and "cannot schedule" not in done.stderr, done.stderr


def test_no_module_takes_the_shells_chat_command(tmp_path: Path) -> None:
    """`./dev run` is `chat tobio`: with every module of configs/kernel.yaml loaded, `chat` must still talk."""
    done = run_shell(tmp_path, "-c", "chat --help")
    assert "Talk with an agent" in done.stdout + done.stderr, done.stdout + done.stderr
