"""bench/setup.py's quick mode runs in seconds and reports what the full run reports about this venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_mode_prints_venv_size_and_embedding_speed(tmp_path: Path) -> None:
    env = {**os.environ, "TOBIO_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "bench/setup.py", "--quick", "--texts", "16"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["venv_mb"] > 10 and result["embed_texts_per_s"] > 0 and result["cores"] >= 1
    assert list(tmp_path.rglob("*.gguf"))  # the embedding model was converted into the cache it was given


def test_the_full_run_recognises_a_posted_reply_in_a_colour_terminal(tmp_path: Path) -> None:
    """The full run waits for this line in `./dev run`; once it waited 600 s for a plain `tobio: `."""
    import importlib.util

    import pexpect

    from shell.testing import shell_env, write_config

    spec = importlib.util.spec_from_file_location("setup_bench", ROOT / "bench" / "setup.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    env = {k: v for k, v in shell_env(tmp_path).items() if k != "NO_COLOR"}  # colours, as a user's terminal has
    config = write_config(tmp_path)
    child = pexpect.spawn(str(Path(sys.executable).parent / "tobio-shell"), ["--config", str(config), "--chat", "echo"],
                          env=env, cwd=str(tmp_path), dimensions=(40, 120), encoding="utf-8", timeout=60)
    try:
        child.expect("chat:echo> ")
        child.send("hello\r")
        child.expect(bench.posted_reply("echo"))
        assert child.match.group(1).strip() == "Hello, user!"
        assert "\x1b[" in child.match.group(0)  # the name did come in colour
        child.sendcontrol("d")
    finally:
        child.close(force=True)
