"""The `%tobio` magic in a real IPython InteractiveShell (in-memory history)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from tobio.errors import TobioError
from tobio.jupyter import close_kernel

from conftest import write


@pytest.fixture
def ip(tmp_path: Path) -> Iterator[InteractiveShell]:
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    write(tmp_path / "conf" / "agents" / "echo.yaml", "name: echo\ntype: scripted\nchannels: [lobby]\nreplies: ['e: {text}']\n")
    write(tmp_path / "conf" / "kernel.yaml", "modules: [scripted]\nagents: [agents/*.yaml]\n")
    shell.run_line_magic("load_ext", "tobio")
    shell.run_line_magic("tobio", f"--config {tmp_path / 'conf' / 'kernel.yaml'} --database duckdb:///{tmp_path / 'nb.duckdb'}")
    try:
        yield shell
    finally:
        close_kernel()
        InteractiveShell.clear_instance()


def test_line_magic_returns_a_result_with_html_and_dataframe(ip: InteractiveShell) -> None:
    result = ip.run_line_magic("tobio", "agent ls")
    assert [row[0] for row in result.rows] == ["echo"]
    assert "<table>" in result._repr_html_()
    frame = ip.run_line_magic("tobio", "sql SELECT name, type FROM agents")
    try:
        import pandas  # noqa: F401  # not a dependency of Tobio's: a user may have it
    except ImportError:
        with pytest.raises(TobioError, match="needs pandas"):  # one clear line
            frame.to_pandas()
    else:
        assert frame.to_pandas().to_dict("records") == [{"name": "echo", "type": "scripted"}]


def test_sql_and_json_pass_through_without_expansion(ip: InteractiveShell) -> None:
    ip.user_ns["x"] = "EXPANDED"
    result = ip.run_cell("%tobio sql SELECT '{x}' AS a, '$x' AS b, '{\"k\": 1}' AS c").result
    assert result.rows == [("{x}", "$x", '{"k": 1}')]


def test_cell_magic_runs_several_commands(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell_magic("tobio", "", "# a comment\nchannel post lobby hello there\nmod ls\n")
    count = ip.run_line_magic("tobio", "sql SELECT count(*) FROM messages WHERE channel = 'lobby'")
    assert count.rows[0][0] >= 1


def test_bad_command_shows_a_clear_error_and_the_kernel_keeps_working(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = ip.run_cell("%tobio agent frobnicate")
    assert outcome.success and outcome.result is None
    err = capsys.readouterr().err
    assert "error: unknown command 'frobnicate' in 'agent'" in err and "Traceback" not in err
    assert ip.run_line_magic("tobio", "agent ls").rows


def test_bad_quoting_in_the_start_options_is_one_line_and_changes_nothing(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert ip.run_line_magic("tobio", "--config 'unterminated") is None
    assert capsys.readouterr().err.strip().startswith("error: ")
    assert ip.run_line_magic("tobio", "agent ls") is not None  # the configured kernel is still the one in use


def test_chatview_button_sends_and_the_reply_arrives(ip: InteractiveShell) -> None:
    import time

    from tobio.jupyter import ChatView, get_kernel

    view = ChatView("echo")
    view.text.value = "hello widget"
    view.send.click()
    deadline = time.monotonic() + 20
    while "e: hello widget" not in view.log.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "hello widget" in view.log.value and "e: hello widget" in view.log.value
    assert view.text.value == ""
    kernel = get_kernel()
    kernel.call(kernel.writer.flush())
    stored = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.user.echo' ORDER BY id").rows
    assert stored == [("hello widget",), ("e: hello widget",)]


def test_chat_magic_opens_a_chat_view(ip: InteractiveShell) -> None:
    from tobio.jupyter import ChatView

    view = ip.run_line_magic("tobio", "chat echo")
    assert isinstance(view, ChatView) and view.channel == "dm.user.echo"


def test_chatview_close_removes_its_listener(ip: InteractiveShell) -> None:
    from tobio.jupyter import ChatView, get_kernel

    kernel = get_kernel()

    def listeners() -> int:
        return len(kernel.transport._listeners.get("dm.user.echo", ()))

    before = listeners()
    view = ChatView("echo")
    assert listeners() == before + 1
    view.close()
    assert listeners() == before and view.send.disabled
    with ChatView("echo") as again:
        again.text.value = "hello again"
        again.send.click()
        deadline = time.monotonic() + 20
        while "e: hello again" not in again.log.value and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "e: hello again" in again.log.value
    assert listeners() == before


def test_chatview_stop_cancels_the_agents_run(tmp_path: Path) -> None:
    """Stop in a notebook: the persona's model run ends `cancelled`, the reply so far stays in the log."""
    from tobio.jupyter import ChatView, configure, get_kernel

    story = " ".join(f"word{i}" for i in range(300))
    write(tmp_path / "personas" / "p.yaml", "name: Tobio\ndescription: A friend.\n")
    write(tmp_path / "agents" / "tobio.yaml", "name: tobio\ntype: persona\npersona: ../personas/p.yaml\n")
    write(tmp_path / "kernel.yaml", "modules: [scripted, persona]\nagents: [agents/*.yaml]\n"
          f"providers: {{s: {{type: scripted, token_delay_s: 0.1, replies: ['{story}']}}}}\n"
          "models: {chat-default: {provider: s, model: x}}\n")
    configure(config=str(tmp_path / "kernel.yaml"), database=f"duckdb:///{tmp_path / 'nb.duckdb'}")
    try:
        kernel = get_kernel()
        view = ChatView("tobio")
        view.say("tell me a long story")
        deadline = time.monotonic() + 30
        while "word2" not in view.log.value:
            assert time.monotonic() < deadline, view.log.value
            time.sleep(0.02)
        view.stop_button.click()
        began = time.monotonic()
        while kernel.run("run ls --agent tobio").records()[-1]["status"] != "cancelled":
            assert time.monotonic() - began < 1.0
            time.sleep(0.02)
        assert "word2" in view.log.value and "[stopped]" in view.log.value
        view.close()
    finally:
        close_kernel()
        configure()  # back to the defaults for whatever runs next
