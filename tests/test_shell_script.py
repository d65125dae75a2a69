""".tsh scripts, `-c` and stdin: comments, continuations, arguments, stop at the first error, exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shell.app import main
from shell.script import logical_lines, substitute
from shell.testing import shell_env, write_config
from tobio.errors import CommandError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run `tobio-shell ARGS` in-process on a temp config and database; returns (status, out, err)."""
    monkeypatch.setenv("TOBIO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOBIO_LOAD_PLUGINS", "")
    config = write_config(tmp_path)
    database = f"duckdb:///{tmp_path / 'script.duckdb'}"

    def go(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        status = main(["--config", str(config), "--database", database, *args])
        out, err = capsys.readouterr()
        return status, out, err

    return go


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_script_lines_and_arguments() -> None:
    text = "# a comment\nagent ls\n  # indented comment\nchannel post lobby \\\n    hello \\\n    there\n\nsql SELECT 1;\n"
    assert list(logical_lines(text.splitlines(), "s.tsh")) == [
        ("s.tsh:2", "agent ls"), ("s.tsh:4", "channel post lobby hello there"), ("s.tsh:7", ""), ("s.tsh:8", "sql SELECT 1;")]
    replaced = substitute("post $1 '${2}' $# [$@] ${3:-none} \\$1 $0", ["a", "b c"], "x.tsh")
    assert replaced == "post a 'b c' 2 [a b c] none $1 x.tsh"
    os.environ["TOBIO_TEST_WORD"] = "env"
    try:
        assert substitute("${TOBIO_TEST_WORD} ${NOPE_NOT_SET:-dflt}", []) == "env dflt"
    finally:
        del os.environ["TOBIO_TEST_WORD"]
    with pytest.raises(CommandError, match=r"\$2 is not set \(the script got 1 argument\)"):
        substitute("echo $2", ["one"])


def test_a_script_that_succeeds(run, tmp_path: Path) -> None:
    script = write(tmp_path, "ok.tsh", """# set up a channel, talk to echo, read it back
channel create garden --topic "$1"
channel sub echo garden
channel post garden "${2:-hello}, \\
   echo"
wait
agent
history echo --last 2
exit
sql
SELECT topic FROM channels
WHERE name = 'garden';
exit
""")
    status, out, err = run(script, "plants and such")
    assert (status, err) == (0, "")
    assert "created garden" in out and "Hello, !" in out  # echo answered the kernel (no sender name)
    assert "plants and such" in out


def test_a_script_that_fails_midway_stops_there(run, tmp_path: Path) -> None:
    script = write(tmp_path, "bad.tsh", "channel create before\nagent show nobody\nchannel create after\n")
    status, out, err = run(script)
    assert status == 1
    assert err == f"{script}:2: error: no agent named 'nobody' (see `agent ls --all`)\n"
    assert "created before" in out and "after" not in out
    status, out, _ = run("-c", "channel ls")
    assert "before" in out and "after" not in out  # the line after the failure never ran


def test_keep_going_runs_everything_and_still_fails(run, tmp_path: Path) -> None:
    script = write(tmp_path, "bad.tsh", "agent show nobody\nchannel create after\nagent lss\nsql SELECT 'end' AS marker\n")
    status, out, err = run("--keep-going", script)
    assert status == 1
    assert "created after" in out and "end" in out
    assert f"{script}:1: error: no agent named" in err and f"{script}:3: error: unknown command 'lss'" in err


def test_exit_code_and_missing_files(run, tmp_path: Path) -> None:
    script = write(tmp_path, "exit.tsh", "channel create one\nexit 7\nchannel create two\n")
    assert run(script)[0] == 7
    status, _, err = run(str(tmp_path / "missing.tsh"))
    assert status == 2 and "cannot read" in err
    status, _, err = run(write(tmp_path, "chat.tsh", "chat echo\n"))
    assert status == 1 and "needs the interactive prompt" in err


@pytest.mark.slow
def test_wait_gives_up_on_agents_that_never_go_quiet(run, tmp_path: Path) -> None:
    agent_file = tmp_path / "configs" / "agents" / "echo.yaml"
    script = write(tmp_path, "pingpong.tsh", f"""agent spawn {agent_file} --name bob
channel post lobby "hello you two"
wait --timeout 1
""")
    status, _, err = run(script)
    assert status == 1
    assert err.startswith(f"{script}:3: error: agents still busy after 1 s")


def test_dash_c_json_and_stdin(run) -> None:
    status, out, err = run("--json", "-c", "agent ls\nsql SELECT 42 AS answer")
    assert status == 0 and err == ""
    agents, answer = [json.loads(line) for line in out.splitlines()]
    assert agents[0]["name"] == "echo" and answer == [{"answer": 42}]
    status, out, err = run(stdin="sql\nSELECT 6 * 7\n  AS answer;\nexit\nagent lss\nsql SELECT 'never' AS marker\n")
    assert status == 1 and "42" in out and "never" not in out
    assert err.startswith("error: unknown command 'lss' in 'agent'")


@pytest.mark.slow
def test_the_console_script_in_a_pipe(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    argv = [str(Path(sys.executable).parent / "tobio-shell"), "--config", str(config)]
    lines = "agent ls\nsql SELECT 1 AS one;\nagent nope\nsql SELECT 'never' AS marker\n"
    done = subprocess.run(argv, input=lines, capture_output=True, text=True, env=shell_env(tmp_path), timeout=120)
    assert done.returncode == 1
    assert "echo" in done.stdout and "one" in done.stdout and "never" not in done.stdout
    assert done.stderr.strip().splitlines()[0] == "error: unknown command 'nope' in 'agent'"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.tsh")))
def test_examples_run(example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("TOBIO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOBIO_LOAD_PLUGINS", "")
    config = write_config(tmp_path)  # an echo agent, as in configs/, without the model-backed agents
    monkeypatch.setenv("TOBIO_CONFIG", str(config))
    status = main(["--database", f"duckdb:///{tmp_path / 'example.duckdb'}", f"examples/{example}"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), out
