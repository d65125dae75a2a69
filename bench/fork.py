"""Forking at scale: `agent fork` of an agent with 100,000 messages, and reading the fork's context.

A DuckDB file in Tobio's schema holds a private chat of 100,000 messages between a person and an agent
(both threads pushed, summaries every 200 messages with their memory items, facts about the person,
a state history) and, unless `--quick`, 900,000 messages of other agents' traffic around it. The
kernel (memory, people and lore loaded) then forks the agent halfway through with the real command,
timed end to end (`fork_ms_at_100k`: one transaction; the past is shared by reference). Then the fork's
`thread_context()` (latest summary + last 50 messages, as a turn reads it) is timed against the same
two statements hand-written on the raw connection, as bench/history.py does (`branch_history_ratio`),
and the same for the parent's own thread (`parent_history_ratio`: what a thread that is no fork costs).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tobio.config.schema import KernelConfig
from tobio.db.database import Database
from tobio.db.history import thread_context
from tobio.kernel import Kernel

RAW_SUMMARY = "SELECT content, checkpoint_message_id FROM summaries WHERE thread_id = ? ORDER BY checkpoint_message_id DESC LIMIT 1"
# bench/history.py's statements, with the LIMIT written in, as by hand: DuckDB plans `LIMIT ?` as a full sort
# (here a thread has 100,000 pushes, there 1,000), and SQLAlchemy renders the limit into the statement.
RAW_MESSAGES = """
SELECT m.id, m.channel, a.name, m.role, m.content, m.created_at, m.agent_id, m.thread_id, m.metadata
FROM (SELECT message_id FROM pushes WHERE thread_id = ? AND message_id > ? ORDER BY message_id DESC LIMIT 50) AS p
JOIN messages m ON m.id = p.message_id LEFT JOIN agents a ON a.id = m.agent_id
ORDER BY m.id
"""
CHAT = 100_000
SUMMARY_EVERY = 200


def config() -> KernelConfig:
    providers = {"s": {"type": "scripted", "replies": ["ok"], "embed_dim": 64}}
    models = {"m": {"provider": "s", "model": "x", "purpose": "chat"},
              "summarize": {"provider": "s", "model": "x", "purpose": "summarize"},
              "embed": {"provider": "s", "model": "x", "purpose": "embed"}}
    return KernelConfig(modules=["scripted", "models", "memory", "people", "lore"], providers=providers, models=models,
                        settings={"memory": {"tokenizer_model": "m", "summarize": False}, "people": {"reflect_every": 0}})


def populate(url: str, others: int) -> None:
    """The chat (agent 1 `tobio`, person 2 `ada`, threads 1 and 2 on `dm.ada.tobio`) and other traffic
    (agents 3.., one thread each), written in SQL on a schema the kernel created."""
    db = Database(url)
    db.open()

    def fill(conn: Connection) -> None:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        day = "TIMESTAMP '2026-01-01'"
        raw.execute("INSERT INTO agents (id, name, type, config, config_file, status, state_dict, created_at, updated_at) VALUES "
                    f"(1, 'tobio', 'scripted', '{{\"name\": \"tobio\", \"type\": \"scripted\"}}', NULL, 'running', '{{\"turns\": {CHAT // 2}}}', {day}, {day}),"
                    f"(2, 'ada', 'user', '{{\"name\": \"ada\", \"type\": \"user\"}}', NULL, 'running', '{{}}', {day}, {day})")
        raw.execute("INSERT INTO threads (id, agent_id, channel, name, opened_at) VALUES "
                    f"(1, 1, 'dm.ada.tobio', 'tobio@dm.ada.tobio', {day}), (2, 2, 'dm.ada.tobio', 'ada@dm.ada.tobio', {day})")
        raw.execute("INSERT INTO messages (id, agent_id, thread_id, channel, role, created_at, content) "
                    f"SELECT i, 1 + i % 2, 1 + i % 2, 'dm.ada.tobio', CASE WHEN i % 2 = 0 THEN 'assistant' ELSE 'user' END, "
                    f"{day} + INTERVAL (i) SECOND, 'chat line ' || i || ' with some words in it' FROM range(1, {CHAT} + 1) t(i)")
        raw.execute(f"INSERT INTO pushes (thread_id, message_id) SELECT t.t, i FROM range(1, {CHAT} + 1) m(i), range(1, 3) t(t)")
        raw.execute(f"INSERT INTO handled (thread_id, message_id) VALUES (1, {CHAT}), (2, {CHAT})")
        if others:
            agents = 100
            raw.execute("INSERT INTO agents (id, name, type, config, config_file, status, state_dict, created_at, updated_at) "
                        f"SELECT i, 'other' || i, 'scripted', '{{}}', NULL, 'killed', '{{}}', {day}, {day} FROM range(3, {agents} + 3) t(i)")
            raw.execute("INSERT INTO threads (id, agent_id, channel, name, opened_at, closed_at) "
                        f"SELECT i, i, 'c' || i, 'other' || i || '@c' || i, {day}, {day} FROM range(3, {agents} + 3) t(i)")
            raw.execute("INSERT INTO messages (id, agent_id, thread_id, channel, role, created_at, content) "
                        f"SELECT i, 3 + i % {agents}, 3 + i % {agents}, 'c' || (3 + i % {agents}), 'assistant', "
                        f"{day} + INTERVAL (i - {CHAT}) SECOND, 'other line ' || i FROM range({CHAT} + 1, {CHAT} + {others} + 1) t(i)")
            raw.execute(f"INSERT INTO pushes (thread_id, message_id) SELECT 3 + i % {agents}, i FROM range({CHAT} + 1, {CHAT} + {others} + 1) t(i)")
        summaries = CHAT // SUMMARY_EVERY - 1  # the newest 200 messages are not summarised yet
        raw.execute("INSERT INTO summaries (id, thread_id, checkpoint_message_id, content, created_at) "
                    f"SELECT k, 1, k * {SUMMARY_EVERY}, 'summary up to ' || (k * {SUMMARY_EVERY}), {day} + INTERVAL (k * {SUMMARY_EVERY} + 1) SECOND "
                    f"FROM range(1, {summaries} + 1) t(k)")
        raw.execute("INSERT INTO memory_items (id, kind, source_id, created_at, importance, model, vector) "
                    f"SELECT k, 'summary', k, {day} + INTERVAL (k * {SUMMARY_EVERY}) SECOND, 0.5, 'embed', "
                    f"list_transform(range(64), x -> (x * k % 7)::FLOAT) FROM range(1, {summaries} + 1) t(k)")
        raw.execute("INSERT INTO memory_summary_spans (summary_id, thread_id, first_message_id, last_message_id, messages, tokens) "
                    f"SELECT k, 1, (k - 1) * {SUMMARY_EVERY} + 1, k * {SUMMARY_EVERY}, {SUMMARY_EVERY}, 2000 FROM range(1, {summaries} + 1) t(k)")
        raw.execute("INSERT INTO people_facts (id, agent_id, person, key, value, source, message_id, created_at, superseded_at, confidence) "
                    f"SELECT k, 1, 'ada', 'key' || (k % 50), 'value ' || k, 'rule', k * 997, {day} + INTERVAL (k * 997) SECOND, "
                    f"CASE WHEN k + 50 <= 100 THEN {day} + INTERVAL ((k + 50) * 997) SECOND END, 0.8 FROM range(1, 101) t(k)")
        raw.execute("INSERT INTO state (id, agent_id, state_dict, created_at, superseded_at) "
                    f"SELECT k, 1, '{{\"turns\": ' || k || '}}', {day} + INTERVAL (k * 100) SECOND, {day} + INTERVAL ((k + 1) * 100) SECOND "
                    f"FROM range(1, {CHAT // 100}) t(k)")

    db.call_sync(fill)
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="no traffic around the chat, fewer reads")
    parser.add_argument("--reads", type=int, default=None, help="context reads of each kind (default 300, quick 60)")
    args = parser.parse_args()
    others = 0 if args.quick else 900_000
    reads = args.reads or (60 if args.quick else 300)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"duckdb:///{Path(tmp) / 'fork.duckdb'}"
        Kernel(config(), database=url).start().close()  # the schema, modules' tables included
        began = time.perf_counter()
        populate(url, others)
        build_s = time.perf_counter() - began
        kernel = Kernel(config(), database=url).start()
        try:
            kernel.run("agent ls")  # warm the command path for the timed call
            # A running kernel has bound a parameter already, and DuckDB's client imports pandas (~0.5 s) on
            # the first one (tobio/db/literals.py); the fork binds many, so that import is paid here.
            kernel.db.call_sync(lambda c: c.execute(sa.text("SELECT :one"), {"one": 1}).scalar())
            began = time.perf_counter()
            made = kernel.run(f"agent fork tobio --message {CHAT // 2} --as tobio2")
            fork_ms = (time.perf_counter() - began) * 1000
            fork_thread = int(made.data["threads"]["1"])
            shared = kernel.db.call_sync(lambda c: c.exec_driver_sql(f"SELECT count(*) FROM pushes WHERE thread_id = {fork_thread}").scalar())
            assert shared == CHAT // 2, shared

            def tobio_once(conn: Connection, thread_id: int) -> float:
                t = time.perf_counter()
                context = thread_context(conn, thread_id, 50)
                assert len(context.messages) == 50 and context.summary
                assert context.messages[-1].sender == ("tobio2" if thread_id == fork_thread else "tobio")  # its own lines
                return time.perf_counter() - t

            def raw_once(conn: Connection, thread_id: int) -> float:
                raw = conn.connection.dbapi_connection
                assert raw is not None
                t = time.perf_counter()
                summary = raw.execute(RAW_SUMMARY, [thread_id]).fetchone()
                rows = raw.execute(RAW_MESSAGES, [thread_id, summary[1]]).fetchall()
                assert len(rows) == 50
                return time.perf_counter() - t

            for _ in range(10):
                for thread in (fork_thread, 1):
                    kernel.db.call_sync(tobio_once, thread)
                    kernel.db.call_sync(raw_once, thread)
            branch_ms: list[float] = []
            raw_ms: list[float] = []
            parent_ms: list[float] = []
            parent_raw_ms: list[float] = []
            order = random.Random(7)
            for _ in range(reads):  # interleaved, in a shuffled order, so noise hits all alike
                runs = [(branch_ms, tobio_once, fork_thread), (raw_ms, raw_once, fork_thread),
                        (parent_ms, tobio_once, 1), (parent_raw_ms, raw_once, 1)]
                order.shuffle(runs)
                for out, once, thread in runs:
                    out.append(kernel.db.call_sync(once, thread) * 1000)
        finally:
            kernel.close()
    result = {
        "chat_messages": CHAT,
        "other_messages": others,
        "build_s": round(build_s, 2),
        "fork_ms_at_100k": round(fork_ms, 1),
        "branch_context_ms_p50": round(statistics.median(branch_ms), 3),
        "raw_sql_ms_p50": round(statistics.median(raw_ms), 3),
        "parent_context_ms_p50": round(statistics.median(parent_ms), 3),  # the same read of the parent's own thread
        "parent_raw_sql_ms_p50": round(statistics.median(parent_raw_ms), 3),
    }
    result["branch_history_ratio"] = round(result["branch_context_ms_p50"] / result["raw_sql_ms_p50"], 3)
    result["parent_history_ratio"] = round(result["parent_context_ms_p50"] / result["parent_raw_sql_ms_p50"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
