"""Agent SQL as an attacker would write it: row scope, files, catalogue, time, on every backend.

An agent `spy` with `commands: [sql]` shares the room with `alice`; only alice joined `secret`,
where SECRET was posted. Whatever spy types, SECRET (and the secret file's contents) must never
come back to it: not in rows, not in an error line. Its legitimate questions must still work.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tobio.commands import Result
from tobio.config.schema import KernelConfig
from tobio.db import agent_sql
from tobio.errors import CommandError, TobioError
from tobio.kernel import Kernel

from conftest import BACKENDS, _fresh_postgres, _postgres_url, write
from helpers import wait_until

SECRET = "vault code 7419"
FILE_SECRET = "filesecret_31337"


class Setup:
    """A kernel with spy, alice and auditor (sql_all_rows), and a secret file on disk."""

    def __init__(self, kernel: Kernel, backend: str, csv: Path) -> None:
        self.kernel, self.backend, self.csv = kernel, backend, csv

    def spy(self, query: str) -> Result:
        return self.kernel.run(f"sql {query}", caller="spy")


def _spawn(kernel: Kernel, folder: Path, name: str, extra: str = "") -> None:
    write(folder / "p.yaml", "name: Probe\ndescription: Curious about itself.\n")
    text = f"name: {name}\ntype: persona\npersona: p.yaml\nchannels: [room]\ncommands: ['sql']\nstream: false\n{extra}"
    kernel.run(f"agent spawn {write(folder / (name + '.yaml'), text)}")


def _start(url: str, folder: Path) -> Kernel:
    config = KernelConfig(modules=["scripted", "models", "persona"],
                          providers={"s": {"type": "scripted", "replies": ["ok"]}},
                          models={"chat-default": {"provider": "s", "model": "x"}})
    kernel = Kernel(config, database=url).start()
    _spawn(kernel, folder, "spy")
    _spawn(kernel, folder, "alice")
    _spawn(kernel, folder, "auditor", "sql_all_rows: true\n")
    kernel.run("channel sub alice secret")
    kernel.run(f"channel post secret {SECRET}")
    kernel.run("channel post room everyone hears this")
    live = kernel.agents.live
    wait_until(lambda: live["spy"].turns == 1 and live["alice"].turns == 2 and live["auditor"].turns == 1)
    kernel.call(kernel.writer.flush())
    return kernel


@pytest.fixture(scope="module", params=BACKENDS)
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One kernel per backend for the whole module (as db_url, but shared: starting one takes seconds)."""
    folder = tmp_path_factory.mktemp(f"sandbox-{request.param}")
    csv = write(folder / "secret.csv", f"name,value\nkey,{FILE_SECRET}\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TOBIO_DATA_DIR", str(folder / "data"))
        env.setenv("TOBIO_LOAD_PLUGINS", "")
        env.delenv("TOBIO_CONFIG", raising=False)
        env.delenv("TOBIO_DATABASE", raising=False)
        if request.param == "postgresql":
            urls = _fresh_postgres(_postgres_url())
            url = next(urls)
        else:
            urls, url = iter(()), f"{request.param}:///{folder / ('tobio.' + request.param)}"
        kernel = _start(url, folder)
        try:
            yield Setup(kernel, request.param, csv)
        finally:
            kernel.close()
            for _ in urls:  # drops the PostgreSQL database
                pass


@pytest.mark.parametrize("command", [
    "/cmd sql SELECT string_agg(content,' | ') FROM tobio/**/.main/**/.messages WHERE channel='secret'",
    "/cmd sql SELECT string_agg(content,' | ') FROM messages WHERE channel='secret'",
])
@pytest.mark.slow
def test_a_persona_cannot_post_another_agents_secret_to_the_lobby(db_url: str, tmp_path: Path, command: str) -> None:
    config = KernelConfig(modules=["scripted", "models", "persona"],
                          providers={"s": {"type": "scripted", "replies": [command, "I found: {last}"]}},
                          models={"chat-default": {"provider": "s", "model": "x"}})
    kernel = Kernel(config, database=db_url).start()
    try:
        diary = write(tmp_path / "alice.yaml", "name: alice\ntype: scripted\nchannels: [secret]\nmax_replies: 0\n")
        kernel.run(f"agent spawn {diary}")
        _spawn(kernel, tmp_path, "spy")
        kernel.run(f"channel post secret {SECRET}")
        kernel.run("channel post room what is new?")
        wait_until(lambda: kernel.agents.live["spy"].turns == 1)
        kernel.call(kernel.writer.flush())
        said = kernel.run("sql SELECT content FROM messages WHERE channel = 'room' ORDER BY id").rows
        assert len(said) == 2 and said[1][0].startswith("I found:"), said
        assert not _leaks(repr(said)), said
        assert (SECRET,) in kernel.run("sql SELECT content FROM messages WHERE channel = 'secret'").rows
    finally:
        kernel.close()


def _leaks(text: str) -> bool:
    """The secret, or its code as a number of its own: a run's timing such as 0.07369700074195862 holds
    the digits 7419 by chance (seen once in a clean run), and that is no leak."""
    return SECRET in text or re.search(r"(?<!\d)7419(?!\d)", text) is not None or FILE_SECRET in text or "root:x:0" in text


def _outcome(s: Setup, query: str) -> tuple[str, bool]:
    """(what spy saw, whether it was refused); asserts a refusal is one clean line."""
    try:
        result = s.spy(query)
    except CommandError as exc:
        line = str(exc)
        assert "\n" not in line and "Traceback" not in line, line
        assert "current transaction is aborted" not in line, line
        return line, True
    return repr((result.columns, result.rows, result.text)), False


# Must be refused outright: files, table functions, the catalogue, settings, schema-qualified names, writes.
REFUSED = [
    "SELECT content FROM tobio/**/.main/**/.messages",
    "SELECT string_agg(content,' | ') FROM tobio/**/.main/**/.messages WHERE channel='secret'",
    "SELECT content FROM main/**/.messages",
    "SELECT content FROM main.messages",
    "SELECT content FROM MAIN . MESSAGES",
    'SELECT content FROM "main"."messages"',
    'select CONTENT from "MAIN"."MESSAGES"',
    "SELECT content FROM tobio.main.messages",
    "SELECT content FROM tobio.messages",
    "SELECT content FROM public.messages",
    "SELECT content FROM temp.messages",
    "SELECT content FROM main--x\n.messages",
    "SELECT content FROM main\u200b.messages",
    "SELECT * FROM query_table('tob' || 'io.main.messages')",
    "SELECT * FROM query_table(['tobio.main.messages'])",
    "SELECT * FROM query('SELECT content FROM tob' || 'io.ma' || 'in.messages')",
    "SELECT * FROM '{csv}'",
    'SELECT * FROM "{csv}"',
    "SELECT * FROM read_csv('{csv}')",
    "SELECT * FROM read_csv_auto('{csv}')",
    "SELECT * FROM read_text('{csv}')",
    "SELECT content FROM read_blob('{csv}')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT current_setting('threads')",
    "SELECT getvariable('x')",
    "SELECT version()",
    "SELECT current_database()",
    "SELECT current_user",
    "SELECT sqlite_version()",
    "SELECT load_extension('/tmp/x')",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_catalog.version()",
    "SELECT * FROM pg_settings",
    "SELECT * FROM pg_catalog.pg_tables",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM sqlite_master",
    "SELECT sql FROM sqlite_schema",
    "SELECT * FROM pragma_table_info('messages')",
    "SELECT * FROM pragma_database_list",
    "SELECT 'messages'::regclass",
    "SELECT * FROM range(10)",
    "SELECT * FROM generate_series(1, 3)",
    "SELECT * FROM unnest([1, 2])",
    "SELECT x.content FROM threads t, LATERAL (SELECT content FROM main.messages) x",
    "SELECT * FROM threads, LATERAL query_table('messages')",
    "SELECT content FROM messages UNION ALL SELECT content FROM main.messages",
    "SELECT (SELECT content FROM main.messages WHERE channel = 'secret' LIMIT 1)",
    "SELECT content FROM (SELECT * FROM (SELECT * FROM main.messages) a) b",
    "SELECT * FROM (VALUES (1)) v, main.messages",
    "SELECT * FROM messages m POSITIONAL JOIN main.messages",
    "SELECT COLUMNS('.*') FROM messages",
    "SELECT repeat('x', 1000000000)",
    "SELECT replace(replace('xxxxxxxxxxxxxxxx', 'x', 'xxxxxxxxxxxxxxxx'), 'x', 'xxxxxxxxxxxxxxxx')",
    "SELECT lpad('x', 1000000000, 'y')",
    "FROM main.messages",
    "COPY messages TO '/tmp/tobio_copy.csv'",
    "COPY (SELECT * FROM messages) TO '/tmp/tobio_copy.csv'",
    "ATTACH '{csv}.db' AS other",
    "DETACH tobio",
    "PRAGMA database_list",
    "PRAGMA table_info('messages')",
    "SET threads = 1",
    "SET enable_external_access = true",
    "RESET ALL",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CALL pragma_database_size()",
    "EXPORT DATABASE '/tmp/tobio_export'",
    "SUMMARIZE messages",
    "DESCRIBE messages",
    "SHOW TABLES",
    "EXPLAIN SELECT * FROM messages",
    "CREATE VIEW v AS SELECT * FROM main.messages",
    "CREATE TEMP TABLE t AS SELECT * FROM messages",
    "DELETE FROM messages",
    "UPDATE messages SET content = 'x'",
    "INSERT INTO messages SELECT * FROM messages",
    "DROP TABLE messages",
    "BEGIN",
    "SELECT 1; SELECT content FROM main.messages",
    "SELECT 1; DROP TABLE messages",
    "SELECT * INTO stolen FROM messages",
    "SELECT * FROM messages FOR UPDATE",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "WITH x AS (SELECT 1) SELECT * FROM pg_settings",
    "SELECT * FROM (WITH pg_settings AS (SELECT 1) SELECT * FROM pg_settings) a, pg_settings",
    "SELECT * FROM (WITH logs2 AS (SELECT 1) SELECT * FROM logs2) a, logs2",
    "SELECT * FROM messages AT (VERSION => 1)",
    "SELECT $1",
    "SELECT ?",
    "SELECT (x -> x + 1)",
    "SELECT content FROM ｍessages",
    "WITH x AS (DELETE FROM messages RETURNING *) SELECT * FROM x",
    "WITH x AS (SELECT * FROM main.messages) SELECT * FROM x",
    "SELECT content FROM messages WHERE content = getenv('HOME')",
    "SELECT current_setting('data_directory')",
    "VACUUM",
    "CHECKPOINT",
    "ANALYZE messages",
    "USE tobio",
]

# May run, but must show spy nothing of the secret: shadowing CTEs, quoting, case, comments, joins.
SCOPED = [
    "SELECT content FROM messages",
    "SELECT content FROM messages WHERE channel = 'secret'",
    "SELECT string_agg(content, ' | ') FROM messages WHERE channel = 'secret'",
    'SELECT "content" FROM "messages" WHERE "channel" = \'secret\'',
    "select CONTENT from MESSAGES where CHANNEL = 'secret'",
    "SELECT content FROM messages -- ' \n WHERE channel = 'secret'",
    "SELECT content FROM /* main. */ messages",
    "WITH messages AS (SELECT * FROM messages) SELECT content FROM messages WHERE channel = 'secret'",
    "WITH messages AS (SELECT content FROM messages WHERE channel = 'secret') SELECT * FROM messages",
    "WITH a AS (SELECT 1 AS n), messages AS (SELECT * FROM messages) SELECT content FROM messages, a",
    "WITH threads AS (SELECT * FROM threads) SELECT m.content FROM messages m JOIN threads t ON t.channel = m.channel",
    "SELECT content FROM (SELECT * FROM (SELECT * FROM messages) a) b",
    "SELECT m.content FROM threads t, LATERAL (SELECT content FROM messages WHERE channel = t.channel) m",
    "SELECT content FROM messages UNION ALL SELECT name FROM channels UNION ALL SELECT content FROM logs",
    "SELECT content FROM summaries UNION SELECT content FROM messages",
    "SELECT p.message_id, m.content FROM pushes p LEFT JOIN messages m ON m.id = p.message_id",
    "SELECT name, config, state_dict FROM agents",
    "SELECT count(*) FROM messages WHERE content LIKE '%7419%'",
    "SELECT content FROM messages WHERE channel = 'secret' AND CAST(content AS INTEGER) = 1",
    "SELECT count(*) FROM messages WHERE CAST(content AS INTEGER) = 1",
    "SELECT CAST(content AS INTEGER) FROM messages WHERE channel = 'secret'",
    "SELECT * FROM steps",
    "SELECT * FROM runs",
    "SELECT * FROM state",
    "SELECT * FROM logs",
    "SELECT * FROM schema_migrations",
    "SELECT t.pg_read_file FROM (SELECT '/etc/passwd' AS f) t",
    "SELECT t.row_to_json FROM messages t",
    "SELECT m.content FROM messages m WHERE m.id IN (SELECT id FROM messages WHERE channel = 'secret')",
    "SELECT * FROM messages a JOIN messages b ON a.id <> b.id WHERE b.channel = 'secret'",
    "SELECT content FROM messages WHERE channel = 'secret' UNION ALL SELECT content FROM messages",
]


@pytest.mark.parametrize("query", REFUSED)
def test_escapes_are_refused(setup: Setup, query: str) -> None:
    seen, refused = _outcome(setup, query.format(csv=setup.csv))
    assert refused, f"ran: {seen}"
    assert not _leaks(seen), seen


@pytest.mark.parametrize("query", SCOPED)
def test_scoped_queries_never_show_the_secret(setup: Setup, query: str) -> None:
    seen, _ = _outcome(setup, query)
    assert not _leaks(seen), seen


def test_the_operator_and_the_all_rows_agent_still_see_the_secret(setup: Setup) -> None:
    rows = setup.kernel.run("sql SELECT content FROM messages WHERE channel = 'secret'").rows
    assert (SECRET,) in rows  # the secret is really there
    audited = setup.kernel.run("sql SELECT content FROM messages WHERE channel = 'secret'", caller="auditor").rows
    assert (SECRET,) in audited
    for query in (f"SELECT * FROM read_csv('{setup.csv}')", "SELECT * FROM duckdb_tables()", "SELECT * FROM main.messages"):
        with pytest.raises(CommandError):
            setup.kernel.run(f"sql {query}", caller="auditor")


def test_legitimate_agent_queries_work(setup: Setup) -> None:
    mine = setup.spy("SELECT content FROM messages ORDER BY id").rows
    assert ("everyone hears this",) in mine and ("ok",) in mine
    joined = setup.spy("SELECT a.name, m.content FROM messages m JOIN agents a ON a.id = m.agent_id ORDER BY m.id").rows
    assert ("spy", "ok") in joined and ("alice", "ok") in joined  # alice's answer in the room, heard by spy
    counts = setup.spy("SELECT channel, count(*) AS n FROM messages GROUP BY channel ORDER BY channel").rows
    assert [c for c, _ in counts] == ["room"]
    cte = setup.spy("WITH me AS (SELECT id FROM agents WHERE name = 'spy') "
                    "SELECT count(*) FROM messages WHERE agent_id IN (SELECT id FROM me)").rows
    assert cte == [(1,)]
    twice = setup.spy("WITH a AS (SELECT id FROM messages) SELECT count(*) FROM a x JOIN a y ON x.id = y.id").rows
    assert twice == [(len(mine),)]
    ranked = setup.spy("SELECT content, row_number() OVER (ORDER BY id) AS n FROM messages ORDER BY n").rows
    assert [n for _, n in ranked] == list(range(1, len(mine) + 1))
    agents = {name: (config, state) for name, config, state in setup.spy("SELECT name, config, state_dict FROM agents").rows}
    assert agents["alice"] == (None, None) and agents["spy"][0] is not None
    assert setup.spy("SELECT count(*) FROM threads").rows == [(1,)]
    assert setup.spy("SELECT count(*) FROM logs").rows == [(0,)]
    assert setup.spy("SELECT DISTINCT upper(content), length(content) FROM messages WHERE content = 'ok'").rows == [("OK", 2)]


def test_agent_limit_keeps_its_meaning_and_has_a_cap(setup: Setup) -> None:
    result = setup.spy("--limit 1 SELECT content FROM messages ORDER BY id")
    assert len(result.rows) == 1 and "--limit" in (result.note or "")
    assert setup.spy("--limit 1 SELECT content FROM messages ORDER BY id LIMIT 1").note is None
    with pytest.raises(CommandError, match="at most"):
        setup.spy(f"--limit {agent_sql.MAX_ROWS + 1} SELECT 1")
    many = setup.spy("--limit 3 WITH v(x) AS (VALUES (1),(2),(3),(4),(5),(6),(7),(8),(9),(10)) "
                     "SELECT a.x FROM v a, v b, v c, v d, v e, v f, v g, v h, v i LIMIT 100000000")
    assert len(many.rows) == 3 and many.note  # the database built 4 rows, not 10**9
    with pytest.raises(CommandError, match="may not write"):
        setup.kernel.run("sql --write DELETE FROM messages", caller="spy")


@pytest.mark.parametrize("query, expect", [
    ("SELECT no_such_column FROM messages", "no_such_column"),
    ("SELECT content FROM messages WHERE CAST(content AS INTEGER) = 1", ""),
    ("SELECT 1 +", ""),
])
def test_an_agent_sql_error_is_the_first_error_in_one_line(setup: Setup, query: str, expect: str) -> None:
    if "CAST" in query and setup.backend == "sqlite":
        pytest.skip("SQLite casts 'text' to 0 instead of failing")
    with pytest.raises(CommandError) as err:
        setup.spy(query)
    line = str(err.value)
    assert line.startswith("SQL error:") and "\n" not in line and expect in line
    assert "transaction is aborted" not in line
    assert setup.spy("SELECT count(*) FROM threads").rows == [(1,)]  # the next query is unharmed


HEAVY = ("WITH v(x) AS (VALUES (1),(2),(3),(4),(5),(6),(7),(8),(9),(10),(11),(12),(13),(14),(15),(16),(17),(18),(19),(20)) "
         "SELECT sum(a.x * b.x + c.x * d.x + e.x * f.x + g.x) FROM v a, v b, v c, v d, v e, v f, v g")


def test_a_heavy_agent_query_stops_in_time_and_posts_go_on(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_sql, "TIMEOUT_S", 2.0)
    outcome: dict[str, Any] = {}

    def agent() -> None:
        start = time.monotonic()
        try:
            setup.spy(HEAVY)
        except CommandError as exc:
            outcome["error"] = str(exc)
        outcome["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=agent)
    thread.start()
    time.sleep(0.3)  # the agent's query is running
    start = time.monotonic()
    setup.kernel.run("channel post room still here?")
    posted = time.monotonic() - start
    thread.join(15)
    print(f"{setup.backend}: post took {posted:.3f} s; the agent's query stopped after {outcome.get('elapsed', 0):.2f} s")
    assert "stopped after 2 s" in str(outcome.get("error")), outcome
    assert float(outcome["elapsed"]) < 5.0, outcome
    if setup.backend != "sqlite":  # SQLite runs agent SQL on the DB thread, bounded by the same timeout
        assert posted < 1.0, f"a user's post waited {posted:.2f} s behind an agent's query"  # blocked: >= 1.7 s
    assert setup.spy("SELECT count(*) FROM threads").rows == [(1,)]


def _doubling(levels: int, fan: int = 8, materialized: bool = False) -> str:
    """A statement whose one string grows `fan` times per CTE level: small to type, huge to build."""
    how = "AS MATERIALIZED" if materialized else "AS"
    ctes = ["l0 AS (SELECT 'xxxxxxxxxxxxxxxx' AS s)"]
    ctes += [f"l{i} {how} (SELECT {'||'.join(['s'] * fan)} AS s FROM l{i - 1})" for i in range(1, levels + 1)]
    return f"WITH {', '.join(ctes)} SELECT s FROM l{levels}"


@pytest.mark.slow
def test_a_huge_result_is_refused_in_one_line(setup: Setup) -> None:
    with pytest.raises(CommandError, match="more than 1,000,000 characters"):
        setup.spy(_doubling(6))  # 16 * 8**6 = 4 MB in one cell


def test_sqlite_caps_the_strings_an_agent_builds(setup: Setup) -> None:
    if setup.backend != "sqlite":
        pytest.skip("DuckDB has no per-value cap (see agent_sql); PostgreSQL caps values at 1 GB itself")
    with pytest.raises(CommandError, match="too big"):
        setup.spy(_doubling(9, fan=8, materialized=True))  # 16 * 8**9 = 2 GB, refused at 16 MB


_GRAMMAR = st.recursive(
    st.sampled_from(["messages", "threads", "agents", "logs", "main.messages", "x", "m", "(SELECT 1 AS n)",
                     "read_csv('/etc/passwd')", "'/etc/passwd'", "range(3)"]),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: f"(SELECT * FROM {p[0]}, {p[1]})"),
        st.tuples(st.sampled_from(["messages", "m", "x", "threads"]), inner, inner).map(
            lambda p: f"(WITH {p[0]} AS (SELECT * FROM {p[1]}) SELECT * FROM {p[2]})"),
        st.tuples(inner, inner).map(lambda p: f"(SELECT * FROM {p[0]} UNION ALL SELECT * FROM {p[1]})"),
        inner.map(lambda t: f"(SELECT * FROM messages WHERE id IN (SELECT id FROM {t}))"),
        inner.map(lambda t: f"(SELECT * FROM threads, LATERAL (SELECT * FROM {t}) l)"),
    ),
    max_leaves=6,
)


_WORDS = ["SELECT", "FROM", "WHERE", "WITH", "AS", "UNION", "ALL", "JOIN", "LATERAL", "ON", "(", ")", ",", ";", "*",
          "messages", "main.messages", "tobio.main.messages", "main/**/.messages", "threads", "agents", "channels",
          "logs", "pg_settings", "sqlite_master", "content", "channel", "'secret'", "=", "||", "'tob'", "'io.main.messages'",
          "query_table(", "query(", "read_csv(", "sniff_csv(", "duckdb_tables()", "'/etc/passwd'", "--", "/*", "*/",
          "\"", "'", "COPY", "ATTACH", "PRAGMA", "SET", "INSTALL", "LIMIT", "1", "count(*)", "string_agg(content, ',')",
          "CAST(content AS INTEGER)", "ORDER BY", "GROUP BY", "\n", "ｍessages", "\u200b", "::", "->", "$1", "?"]


@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.lists(st.sampled_from(_WORDS), max_size=24).map(" ".join),
                 st.lists(st.sampled_from(_WORDS), max_size=24).map("".join),
                 _GRAMMAR.map(lambda t: f"SELECT * FROM {t} AS q WHERE q.channel = 'secret'"),
                 _GRAMMAR.map(lambda t: f"SELECT string_agg(CAST(q.content AS TEXT), ',') FROM {t} AS q"),
                 st.text(max_size=200)))
@pytest.mark.slow
def test_fuzzed_agent_sql_never_escapes_or_crashes(setup: Setup, query: str) -> None:
    agent_sql_timeout = agent_sql.TIMEOUT_S
    agent_sql.TIMEOUT_S = 0.5
    try:
        result = setup.spy(query)
        seen = repr((result.columns, result.rows))
    except TobioError as exc:
        seen = str(exc)
        assert "Traceback" not in seen
    finally:
        agent_sql.TIMEOUT_S = agent_sql_timeout
    assert not _leaks(seen), (query, seen)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=200, deadline=2000)
@given(query=st.one_of(_GRAMMAR.map(lambda t: f"SELECT * FROM {t} AS q"), st.text(max_size=120)))
def test_compiled_agent_sql_reads_only_scoped_copies(backend: str, query: str) -> None:
    """Whatever goes in, what comes out names no table but the temporary copies and its own CTEs."""
    import sqlglot
    from sqlglot import exp

    from tobio.db.sql_guard import DIALECTS, compile_agent_sql

    known = {"messages", "threads", "agents", "logs"}
    try:
        sql = compile_agent_sql(query, backend, lambda n: f'"temp"."_tobio_scope_{n}"' if n in known else None, 10)
    except CommandError as exc:
        assert "\n" not in str(exc)
        return
    for table in sqlglot.parse_one(sql, read=DIALECTS[backend]).find_all(exp.Table):
        if table.db:
            assert table.db == "temp" and table.name.startswith("_tobio_scope_") and not table.catalog, sql
        else:
            assert table.name.startswith("_tobio_cte_"), sql
