"""End to end in a real pseudo-terminal: TAB completion, a subshell, SQL, Ctrl-C, chat, a clean exit."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from shell.testing import shell_env, write_config

pytestmark = pytest.mark.slow

pexpect = pytest.importorskip("pexpect")
TIMEOUT = 60  # generous: a loaded 2-core machine starts the kernel slowly
SHELL = str(Path(sys.executable).parent / "tobio-shell")


def spawn(args: list[str], env: dict[str, str], cwd: Path) -> "pexpect.spawn[str]":
    return pexpect.spawn(SHELL, args, env=env, cwd=str(cwd), dimensions=(40, 120), encoding="utf-8", timeout=TIMEOUT)


def leave_chat_and_exit(child: "pexpect.spawn[str]") -> None:
    child.send("/exit\r")
    child.expect("tobio> ")
    child.send("exit\r")
    child.expect(pexpect.EOF)


def test_a_session_in_a_terminal(tmp_path: Path) -> None:
    config = write_config(tmp_path, stream=True, token_delay=0.05)
    child = spawn(["--config", str(config)], shell_env(tmp_path), tmp_path)
    try:
        child.expect("tobio> ")
        child.send("agent l\t")  # TAB completes `ls`, or Enter would run `agent l` and fail
        child.expect(r"l(?:\x1b\[[0-9;?]*[A-Za-z])*s")  # the `s` drawn after the `l` (escapes may come between)
        child.send("\r")
        child.expect("scripted")
        child.expect("tobio> ")

        child.send("agent\r")  # a group alone enters it
        child.expect("agent> ")
        child.send("show echo\r")
        child.expect("config file")
        child.expect("agent> ")
        child.send("exit\r")
        child.expect("tobio> ")

        child.send("sql\r")
        child.expect("sql> ")
        child.send("SELECT 6 * 7\r")  # no `;` yet: the statement goes on
        child.send("AS answer;\r")
        child.expect("42")
        child.expect("sql> ")
        child.send("\x04")  # Ctrl-D goes back up
        child.expect("tobio> ")

        child.send("sleep 60\r")
        child.expect(re.escape("\x1b[?2004l"))  # the prompt has given the terminal back (cooked mode)
        for _ in range(5):  # Ctrl-C cancels the command, not the shell
            time.sleep(0.5)  # (a ^C typed before the terminal left raw mode would be a key, not a signal)
            child.sendintr()
            if child.expect(["interrupted", pexpect.TIMEOUT], timeout=5) == 0:
                break
        else:
            pytest.fail("Ctrl-C did not interrupt `sleep 60`")
        child.expect("tobio> ")

        child.send("chat echo\r")
        child.expect("chat:echo> ")
        child.send("hello\r")
        child.expect("echo: Hello, user!")
        leave_chat_and_exit(child)
    finally:
        child.close()
    assert "unknown command" not in (child.before or "")
    assert child.exitstatus == 0, child.before
    history = (tmp_path / "shell_history").read_text()
    assert "agent ls" in history and "SELECT 6 * 7" in history


def test_the_main_job_chats_with_tobio_on_the_embedded_model(tmp_path: Path) -> None:
    """README's `./dev run`: the shell opens a chat with the persona on the embedded model, offline."""
    import duckdb

    root = Path(__file__).resolve().parent.parent
    child = spawn(["--config", "configs/kernel.yaml", "--chat", "tobio"], {**shell_env(tmp_path), "HF_HUB_OFFLINE": "1"}, root)
    try:
        child.expect("What should I call you\\?")  # a new conversation opens with the persona's greeting
        child.expect("chat:tobio> ")
        child.send("Hello! What is your name?\r")
        # Tokens stream into a live line ending in ▌; the finished reply is then printed as one line.
        child.expect(r"tobio: ([^▌\x1b\r\n]+)\r\n", timeout=300)  # the model loads on the first turn
        reply = child.match.group(1).strip()
        child.expect("chat:tobio> ")
        leave_chat_and_exit(child)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert len(reply.split()) >= 2, f"no real reply: {reply!r}"
    with duckdb.connect(str(tmp_path / "tobio.duckdb"), read_only=True) as db:
        said = db.execute(
            "SELECT a.name, m.content FROM messages m JOIN agents a ON a.id = m.agent_id "
            "WHERE m.channel LIKE 'dm.%.tobio' ORDER BY m.id"
        ).fetchall()
    assert said[0] == ("tobio", "Hi! I'm Tobio. What should I call you?"), said  # configs/personas/tobio.yaml's greeting
    assert said[1] == ("user", "Hello! What is your name?"), said
    assert said[2][0] == "tobio" and said[2][1].strip(), said


def test_ctrl_c_cancels_the_reply_on_the_embedded_model(tmp_path: Path) -> None:
    """Ctrl-C while the persona's reply streams on the embedded model: the shell prints the draft with
    [stopped], and `run ls` shows the model run `cancelled` within a second, not generating on."""
    import json

    root = Path(__file__).resolve().parent.parent
    env = {**shell_env(tmp_path), "HF_HUB_OFFLINE": "1"}
    child = spawn(["--config", "configs/kernel.yaml", "--chat", "tobio", "--json"], env, root)
    try:
        child.expect("chat:tobio> ")
        child.send("Tell me a long story about a lighthouse keeper and his cat.\r")
        child.expect("▌", timeout=300)  # the first token is drawn under the prompt (the model loads first)
        child.send("\x03")
        began = time.monotonic()
        child.expect(r"tobio: ([^\r\n]*)\[stopped\]")
        stopped = child.match.group(1)
        while True:
            asked = time.monotonic() - began
            child.send("/cmd run ls --agent tobio\r")
            child.expect(r"(\[\{[^\r\n]*\}\])\r\n")
            chat_runs = [r for r in json.loads(child.match.group(1)) if r["for"] == "chat"]
            if chat_runs and {r["status"] for r in chat_runs} == {"cancelled"}:
                break
            assert asked < 1.0, f"not cancelled {asked:.2f} s after Ctrl-C: {chat_runs}"
        child.expect("chat:tobio> ")
        leave_chat_and_exit(child)
    finally:
        child.close()
    assert asked < 1.0
    assert child.exitstatus == 0, child.before
    print(f"stopped after {len(stopped.split())} words; run ls showed it cancelled {asked:.2f} s after Ctrl-C")
