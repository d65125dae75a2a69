"""The interactive shell on pipe input + DummyOutput: subshells, SQL, errors, Ctrl-C, chat, output."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from shell.chat import Chat
from shell.commands import ShellCommands
from shell.output import Printer
from shell.session import Session
from shell.testing import PipeShell, running_kernel
from tobio.commands.result import Result
from tobio.errors import CommandError
from tobio.kernel import Kernel


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOBIO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOBIO_LOAD_PLUGINS", "")
    return tmp_path


@pytest.fixture
def kernel(env: Path) -> Iterator[Kernel]:
    with running_kernel(env) as kernel:
        yield kernel


@pytest.fixture
def streaming_kernel(env: Path) -> Iterator[Kernel]:
    with running_kernel(env, stream=True) as kernel:
        yield kernel


# -- what a line means where -----------------------------------------------------------------
@pytest.fixture
def session() -> Session:
    kernel = Kernel(None, database="duckdb:///:memory:")  # the tree only: no start needed
    owner = ShellCommands()
    owner.register(kernel.commands)
    return Session(kernel, shell_owner=owner)


def test_subshell_lines_resolve_relative_to_the_group(session: Session) -> None:
    assert session.prompt() == "tobio> "
    action = session.plan("agent")
    assert action.kind == "enter" and action.mode is not None
    session.enter(action.mode)
    assert session.prompt() == "agent> "
    assert session.plan("ls --all").line == "agent ls --all"
    assert session.plan("help").line == "help agent"
    assert session.plan("help ls").line == "help agent ls"
    assert session.plan("sql SELECT 1").line == "sql SELECT 1"  # root commands stay reachable
    assert session.plan("bogus").line == "agent bogus"  # the kernel will name the group in its error
    assert session.plan("exit").kind == "leave"
    assert session.plan("exit 4").kind == "exit" and session.plan("exit 4").code == 4
    session.leave()
    assert session.plan("exit").kind == "exit" and session.plan("quit").kind == "exit"
    assert session.plan("   ").kind == "none"


def test_raw_commands_alone_enter_a_mode(session: Session) -> None:
    action = session.plan("sql --write")
    assert action.kind == "enter" and action.mode is not None and action.mode.label == "sql --write"
    session.enter(action.mode)
    assert session.prompt() == "sql --write> "
    assert session.needs_more("CREATE TABLE t (a INT)") and not session.needs_more("CREATE TABLE t (a INT);")
    assert not session.needs_more("exit")
    assert session.plan("SELECT 1;").line == "sql --write SELECT 1;"
    assert session.plan("\\q").kind == "leave"
    session.leave()
    assert session.plan("sql SELECT 1").kind == "run" and not session.needs_more("sql SELECT 1")
    assert session.plan("sql --help").kind == "run"


def test_chat_lines(session: Session) -> None:
    action = session.plan("chat echo --user ann")
    assert action.kind == "chat" and action.args == {"agent": "echo", "user": "ann", "channel": None}
    assert session.plan("chat").kind == "error"  # missing agent: the parser's message and usage
    from shell.session import Mode

    session.enter(Mode("chat", "chat:echo"))
    assert session.plan("hello there").kind == "say"
    assert session.plan("/exit").kind == "leave"
    assert session.plan("/cmd agent ls").line == "agent ls"
    assert session.plan("/agent ls").line == "agent ls"
    assert session.plan("/help").kind == "info"


# -- the prompt ----------------------------------------------------------------------------------
def test_enter_and_leave_subshells_and_run_sql(kernel: Kernel, env: Path) -> None:
    shell = PipeShell(kernel)

    async def script(s: PipeShell) -> None:
        await s.type("agent\r")
        await s.expect("agent: fork, history")
        assert s.session.prompt() == "agent> "
        await s.type("ls\r")
        await s.expect("echo")
        await s.type("\x04")  # Ctrl-D goes up one level
        await s.until(lambda: s.session.prompt() == "tobio> ")
        await s.type("sql\r")
        await s.type("SELECT 40 +\r")
        await s.type("  2 AS answer;\r")  # the statement went on until the `;`
        out = await s.expect("42")
        assert "answer" in out
        await s.type("SUMMARIZE agents;\r")
        await s.expect("column_name")
        await s.type("exit\r")
        await s.until(lambda: s.session.prompt() == "tobio> ")
        await s.type("exit\r")

    assert shell.run(script) == 0
    assert shell.err.getvalue() == ""


def test_tab_completes_in_the_prompt(kernel: Kernel) -> None:
    shell = PipeShell(kernel)

    async def script(s: PipeShell) -> None:
        await s.type("agent l\t")
        await s.until(lambda: s.buffer == "agent ls ")  # the completer runs in a thread
        await s.type("\r")
        await s.expect("scripted")
        await s.type("exit\r")

    assert shell.run(script) == 0


def test_errors_are_one_line_and_the_shell_goes_on(kernel: Kernel) -> None:
    shell = PipeShell(kernel)

    async def script(s: PipeShell) -> None:
        await s.type("agent lss\r")
        err = await s.expect("usage:", stream="err")
        assert "error: unknown command 'lss' in 'agent' (did you mean 'ls'?)" in err
        await s.type("sql SELECT * FROM nowhere;\r")
        await s.expect("SQL error", stream="err")
        await s.type("agent show 'unclosed\r")
        await s.expect("bad quoting", stream="err")
        await s.type("agent ls\r")
        await s.expect("echo")
        await s.type("exit 3\r")

    assert shell.run(script) == 3
    assert "Traceback" not in shell.err.getvalue()
    assert len(shell.err.getvalue().strip().splitlines()) == 4  # three errors, one usage line


def test_pasted_lines_run_one_by_one(kernel: Kernel) -> None:
    shell = PipeShell(kernel)
    paste = "channel create pasted\nsql\nSELECT name FROM channels\n  WHERE name = 'pasted';\nexit\nagent ls"

    async def script(s: PipeShell) -> None:
        await s.type(f"\x1b[200~{paste}\x1b[201~\r")  # a bracketed paste, then Enter
        await s.expect("created pasted")
        await s.expect("pasted")  # the query found it
        await s.expect("scripted")
        assert s.session.prompt() == "tobio> "
        await s.type("sql\rhelp\r")
        await s.expect("Run SQL on the kernel's database")
        await s.type("exit\rexit\r")

    assert shell.run(script) == 0
    assert shell.err.getvalue() == ""


def test_ctrl_c_cancels_the_command_not_the_shell(kernel: Kernel) -> None:
    shell = PipeShell(kernel)

    async def script(s: PipeShell) -> None:
        await s.type("sleep 120\r")
        await s.until(lambda: s.repl.busy)
        os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends while a command runs
        await s.expect("interrupted")
        await s.type("agent l\x03")  # Ctrl-C at the prompt drops the line
        await s.type("channel ls\r")
        await s.expect("lobby")
        await s.type("exit\r")

    assert shell.run(script, timeout=60) == 0  # far less than the sleep
    assert "error" not in shell.err.getvalue()


def test_chat_streams_replies_and_runs_commands(streaming_kernel: Kernel) -> None:
    shell = PipeShell(streaming_kernel)

    async def script(s: PipeShell) -> None:
        await s.type("chat nobody\r")
        await s.expect("no live agent named 'nobody'", stream="err")
        await s.type("chat echo\r")
        await s.expect("talking with echo on dm.user.echo")
        assert s.session.prompt() == "chat:echo> "
        await s.type("hello\r")
        await s.expect("echo: Hello, user!")
        await s.type("what a day\r")
        await s.expect("echo: You said: what a day")
        await s.type("/cmd thread ls --agent user\r")
        await s.expect("dm.user.echo")
        await s.type("/exit\r")
        await s.until(lambda: s.session.prompt() == "tobio> ")
        await s.type("exit\r")

    assert shell.run(script) == 0
    rows = streaming_kernel.run("sql SELECT count(*) AS n FROM messages WHERE channel = 'dm.user.echo'").rows
    assert rows == [(4,)]  # both sides of the conversation are recorded


def test_chat_shows_each_streamed_piece(streaming_kernel: Kernel) -> None:
    async def talk() -> tuple[list[str], list[list[tuple[str, str]]]]:
        chat = Chat(streaming_kernel, "echo")
        lines: list[str] = []
        snapshots: list[list[tuple[str, str]]] = []
        await chat.open(lambda sender, text: lines.append(f"{sender}: {text}"), lambda: snapshots.append(chat.pending()))
        await chat.say("tell me more about it")
        for _ in range(200):
            if lines:
                break
            await asyncio.sleep(0.02)
        chat.close()
        return lines, snapshots

    lines, snapshots = asyncio.run(talk())
    assert lines == ["echo: You said: tell me more about it"]
    growing = [text for shot in snapshots for _, text in shot]
    assert growing[:2] == ["You ", "You said: "]  # word by word, before the whole message


def test_chat_prints_the_posted_reply_not_its_draft(streaming_kernel: Kernel) -> None:
    """A streamed draft can differ from what the agent posts (a stale draft resampled, a recited instruction
    cut): the shell keeps the draft under the prompt until the message comes, then prints the message."""
    from tobio.messages import Delta

    kernel = streaming_kernel
    echo = kernel.agents.live["echo"]

    async def talk() -> tuple[list[str], list[list[tuple[str, str]]], int]:
        chat = Chat(kernel, "echo")
        lines: list[str] = []
        shown: list[list[tuple[str, str]]] = []
        await chat.open(lambda sender, text: lines.append(f"{sender}: {text}"), lambda: None)
        channel = chat.channel

        async def stream(stream_id: str, *pieces: str) -> None:  # on the kernel's loop, as an agent's relay does
            for piece in pieces:
                kernel.transport.stream(channel, Delta(channel, "echo", stream_id, piece))
            kernel.transport.stream(channel, Delta(channel, "echo", stream_id, "", done=True))

        async def settle() -> None:  # what the kernel's loop sent has reached this one
            await kernel.acall(asyncio.sleep(0))
            await asyncio.sleep(0.05)

        await kernel.acall(stream("s1", "Trains are great! ", "You are Tobio."))
        await settle()
        shown.append(chat.pending())
        await kernel.acall(kernel.transport.post(channel, "Trains are great!", sender=echo, metadata={"stream_id": "s1"}))
        await settle()
        shown.append(chat.pending())
        await kernel.acall(stream("s2", "Still here"))
        await settle()
        stopped = chat.stop_streams()
        await kernel.acall(kernel.transport.post(channel, "Still here, after all.", sender=echo, metadata={"stream_id": "s2"}))
        await settle()  # stopped: its late message is not printed
        chat.close()
        return lines, shown, stopped

    lines, shown, stopped = asyncio.run(talk())
    assert shown == [[("echo", "Trains are great! You are Tobio.")], []]
    assert stopped == 1
    assert lines == ["echo: Trains are great!", "echo: Still here [stopped]"]


def test_ctrl_c_in_a_chat_cancels_the_agents_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while a reply streams: the model run ends `cancelled` in `run ls` within a second, and the
    shell prints what was streamed so far with [stopped]."""
    import time

    from storyteller import storyteller

    monkeypatch.setenv("TOBIO_DATA_DIR", str(tmp_path))
    kernel = storyteller(f"duckdb:///{tmp_path / 't.duckdb'}", tmp_path)
    took: list[float] = []
    try:
        shell = PipeShell(kernel)

        async def script(s: PipeShell) -> None:
            await s.type("chat tobio\r")
            await s.expect("talking with tobio")
            await s.type("tell me a long story\r")
            await s.until(lambda: bool(s.repl.chat.pending()) and "word2" in s.repl.chat.pending()[0][1])
            began = time.monotonic()
            await s.type("\x03", pause=0)
            while (runs := (await kernel.arun("run ls --agent tobio")).records())[-1]["status"] != "cancelled":
                assert time.monotonic() - began < 1.0, runs
                await asyncio.sleep(0.02)
            took.append(time.monotonic() - began)
            await s.expect("[stopped]")
            await s.type("/exit\r")
            await s.until(lambda: s.session.prompt() == "tobio> ")
            await s.type("exit\r")

        assert shell.run(script) == 0
    finally:
        kernel.close()
    assert took and took[0] < 1.0
    assert "tobio: word0 word1 word2" in shell.out.getvalue()


# -- output --------------------------------------------------------------------------------------
def test_printer_styles_and_truncation() -> None:
    result = Result(columns=["n", "word"], rows=[(i, f"w{i}") for i in range(30)], note="from a test")
    out = io.StringIO()
    Printer("rich", out=out, max_rows=5).result(result)
    shown = out.getvalue()
    assert "w4" in shown and "w5" not in shown
    assert "showing 5 of 30 rows" in shown and "from a test" in shown
    plain = io.StringIO()
    Printer("plain", out=plain, max_rows=0).result(result)
    assert plain.getvalue().splitlines()[0].split() == ["n", "word"] and "w29" in plain.getvalue()
    as_json = io.StringIO()
    Printer("json", out=as_json).result(result)
    assert json.loads(as_json.getvalue())[29] == {"n": 29, "word": "w29"}
    long_text = io.StringIO()
    Printer("rich", out=long_text, max_rows=5).result(Result(text="\n".join(map(str, range(100)))))
    assert "90 more lines not shown" in long_text.getvalue()


def test_printer_errors() -> None:
    err = io.StringIO()
    printer = Printer("plain", err=err)
    printer.error(CommandError("bad thing", usage="usage: x [-h]"), where="setup.tsh:3")
    printer.error(ValueError("boom"))
    lines = err.getvalue().splitlines()
    assert lines == ["setup.tsh:3: error: bad thing", "usage: x [-h]",
                     "error: internal error: ValueError: boom (--debug shows the traceback)"]
    debug = io.StringIO()
    try:
        raise CommandError("with trace")
    except CommandError as exc:
        Printer("plain", err=debug, debug=True).error(exc)
    assert "Traceback" in debug.getvalue() and debug.getvalue().rstrip().endswith("error: with trace")
