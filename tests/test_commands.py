"""The command tree: bash-like parsing, help everywhere, one-line errors with usage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tobio.commands import Command, Group
from tobio.errors import CommandError, ModuleError, TobioError
from tobio.kernel import Kernel

from conftest import make_kernel


@pytest.fixture
def k(duckdb_url: str) -> Iterator[Kernel]:
    kernel = make_kernel(duckdb_url)
    yield kernel
    kernel.close()


@pytest.mark.parametrize(
    ("line", "error", "fragment"),
    [
        ("frobnicate", CommandError, "unknown command 'frobnicate'"),
        ("agent frob", CommandError, "unknown command 'frob' in 'agent'"),
        ("agent show 'unterminated", CommandError, "bad quoting: no closing quotation"),
        ("sql DELETE FROM messages", CommandError, "this statement writes; run it with `sql --write"),
        ("sql SELEC 1", CommandError, "SQL error: Parser Error: syntax error"),
        ("mod load nothing", ModuleError, "no module named 'nothing'"),
        ("mod unload database", ModuleError, "cannot be unloaded"),
        ("agent ls --bogus", CommandError, "unrecognized arguments: --bogus"),
        ("channel post", CommandError, "the following arguments are required"),
    ],
)
def test_bad_input_gets_one_clear_line(k: Kernel, line: str, error: type[TobioError], fragment: str) -> None:
    with pytest.raises(error) as err:
        k.run(line)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert "Traceback" not in str(err.value)


def test_parse_errors_carry_usage(k: Kernel) -> None:
    with pytest.raises(CommandError) as err:
        k.run("agent ls --bogus")
    assert err.value.usage == "usage: agent ls [--all] [--branches] [-h]"
    with pytest.raises(CommandError) as err:
        k.run("agent frob")
    assert err.value.usage and err.value.usage.startswith("usage: agent {")


def test_typo_gets_a_suggestion(k: Kernel) -> None:
    with pytest.raises(CommandError, match="did you mean 'agent'"):
        k.run("agnet ls")


def test_every_command_has_help(k: Kernel) -> None:
    for node in k.commands.walk():
        out = k.run(f"{node.path} --help").text or ""
        if isinstance(node, Command):
            assert out.startswith(f"usage: {node.path}"), node.path
            assert node.help, f"{node.path} has no one-line help"
        else:
            assert node.name in out
    assert "agent" in (k.run("help").text or "")
    assert (k.run("help agent ls").text or "").startswith("usage: agent ls")


def test_group_alone_asks_to_enter_it(k: Kernel) -> None:
    result = k.run("agent")
    assert isinstance(result.enter, Group) and result.enter.name == "agent"


def test_quotes_and_escapes_like_bash(k: Kernel) -> None:
    k.run("channel create lobby")
    out = k.run(r"""channel post lobby "two  spaces" and\ escaped 'single "quoted"'""")
    assert out.data["content"] == 'two  spaces and escaped single "quoted"'


def test_sql_keeps_quotes_verbatim(k: Kernel) -> None:
    result = k.run("sql SELECT 'it''s' AS x, \"len\"('a b') AS n")
    assert result.columns == ["x", "n"]
    assert result.rows == [("it's", 3)]


def test_sql_write_needs_flag_and_then_works(k: Kernel) -> None:
    with pytest.raises(CommandError, match="--write"):
        k.run("sql CREATE TABLE notes (x INTEGER)")
    assert k.run("sql --write CREATE TABLE notes (x INTEGER); INSERT INTO notes VALUES (1), (2)").text.startswith("ok")
    assert k.run("sql SELECT sum(x) FROM notes").rows == [(3,)]
    with pytest.raises(CommandError, match="--write"):
        k.run("sql EXPLAIN ANALYZE INSERT INTO notes VALUES (3)")


def test_sql_duckdb_specials_and_limit(k: Kernel) -> None:
    assert k.run("sql SUMMARIZE messages").columns[0] == "column_name"
    result = k.run("sql --limit 5 SELECT * FROM range(100)")
    assert len(result.rows) == 5 and "first 5 rows" in (result.note or "")


def test_agents_run_only_whitelisted_commands(k: Kernel, tmp_path) -> None:
    from conftest import write

    path = write(tmp_path / "a.yaml", "name: probe\ntype: scripted\ncommands: ['mod ls', 'agent show']\n")
    k.run(f"agent spawn {path}")
    assert k.run("mod ls", caller="probe").columns[0] == "module"
    assert k.run("agent show probe", caller="probe").rows
    with pytest.raises(CommandError, match="agent 'probe' may not run 'sql'"):
        k.run("sql SELECT 1", caller="probe")
    refused = k.run("log tail --level WARNING --grep refused").rows
    assert any("probe" in row[-1] and "sql" in row[-1] for row in refused)


def test_structured_results_render_as_text_json_html(k: Kernel) -> None:
    result = k.run("mod ls")
    assert result.to_plain().splitlines()[0].split()[:2] == ["module", "status"]
    assert {"module": "database"}.items() <= result.to_json()[0].items()
    assert "<table>" in result._repr_html_()


def test_cancelling_a_long_query_interrupts_it(k: Kernel) -> None:
    import asyncio
    import time

    async def start_and_cancel() -> float:
        task = asyncio.ensure_future(k.execute("sql SELECT count(*) FROM range(100000000000) a"))
        await asyncio.sleep(0.5)
        task.cancel()
        began = time.perf_counter()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return began

    k.call(start_and_cancel())
    # The DB thread is free again at once: the next statement does not wait for the old one.
    result = k.call(asyncio.wait_for(k.execute("sql SELECT 42"), timeout=10))
    assert result.rows == [(42,)]
