"""Context building on a large history: latest summary + last 50 messages of one thread.

A DuckDB file with 1,000,000 messages over 1,000 threads (Tobio's own schema and indexes), then
`thread_context()` for random threads against the same two statements hand-written and run on the
same raw DuckDB connection. Prints one JSON object; `--quick` uses 100,000 messages.
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

from sqlalchemy.engine import Connection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tobio.db.database import Database
from tobio.db.history import thread_context

RAW_SUMMARY = "SELECT content, checkpoint_message_id FROM summaries WHERE thread_id = ? ORDER BY checkpoint_message_id DESC LIMIT 1"
RAW_MESSAGES = """
SELECT m.id, m.channel, a.name, m.role, m.content, m.created_at, m.agent_id, m.thread_id, m.metadata
FROM (SELECT message_id FROM pushes WHERE thread_id = ? AND message_id > ? ORDER BY message_id DESC LIMIT ?) AS p
JOIN messages m ON m.id = p.message_id LEFT JOIN agents a ON a.id = m.agent_id
ORDER BY m.id
"""


def populate(db: Database, messages: int, threads: int) -> None:
    """Fill the schema with SQL-generated rows: each message is pushed to its own thread. Every INSERT names
    its columns, so a column added to the schema later (nullable, like `messages.reply_to`) cannot break it."""

    def fill(conn: Connection) -> None:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute(
            "INSERT INTO agents (id, name, type, config, config_file, status, state_dict, created_at, updated_at) "
            f"SELECT i, 'agent' || i, 'scripted', '{{}}', NULL, 'running', '{{}}', now(), now() FROM range(1, {threads} + 1) t(i)"
        )
        raw.execute(
            "INSERT INTO threads (id, agent_id, channel, name, opened_at) "
            f"SELECT i, i, 'c' || i, 'agent' || i || '@c' || i, now() FROM range(1, {threads} + 1) t(i)"
        )
        raw.execute(
            "INSERT INTO messages (id, agent_id, thread_id, channel, role, created_at, content) "
            f"SELECT i, (i % {threads}) + 1, (i % {threads}) + 1, 'c' || ((i % {threads}) + 1), 'assistant', "
            f"TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND, 'message number ' || i || ' with some words in it' "
            f"FROM range(1, {messages} + 1) t(i)"
        )
        raw.execute(f"INSERT INTO pushes (thread_id, message_id) SELECT (i % {threads}) + 1, i FROM range(1, {messages} + 1) t(i)")
        # Five summaries per thread; the latest covers all but the last 100 messages of the thread.
        step = (messages // threads - 100) // 5
        raw.execute(
            "INSERT INTO summaries (id, thread_id, checkpoint_message_id, content, created_at) "
            f"SELECT row_number() OVER (), t.i, ((t.i - 1) + (k.k * {step}) * {threads}), 'summary ' || k.k, now() "
            f"FROM range(1, {threads} + 1) t(i), range(1, 6) k(k)"
        )

    db.call_sync(fill)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 messages instead of 1,000,000")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    messages, threads = (100_000, 1_000) if args.quick else (1_000_000, 1_000)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"duckdb:///{Path(tmp) / 'history.duckdb'}")
        db.open()
        began = time.perf_counter()
        populate(db, messages, threads)
        build_s = time.perf_counter() - began
        rng = random.Random(7)
        picks = [rng.randint(1, threads) for _ in range(args.queries)]

        def tobio_once(conn: Connection, thread_id: int) -> float:
            t = time.perf_counter()
            context = thread_context(conn, thread_id, 50)
            assert len(context.messages) == 50 and context.summary
            return time.perf_counter() - t

        def raw_once(conn: Connection, thread_id: int) -> float:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            t = time.perf_counter()
            summary = raw.execute(RAW_SUMMARY, [thread_id]).fetchone()
            rows = raw.execute(RAW_MESSAGES, [thread_id, summary[1], 50]).fetchall()
            assert len(rows) == 50
            return time.perf_counter() - t

        for warm in picks[:10]:  # warm caches for both paths alike
            db.call_sync(tobio_once, warm)
            db.call_sync(raw_once, warm)
        tobio_ms, raw_ms = [], []
        for thread_id in picks:  # interleaved so machine noise hits both alike
            tobio_ms.append(db.call_sync(tobio_once, thread_id) * 1000)
            raw_ms.append(db.call_sync(raw_once, thread_id) * 1000)
        db.close()
    out = {
        "messages": messages,
        "threads": threads,
        "build_s": round(build_s, 2),
        "context_ms_p50": round(statistics.median(tobio_ms), 3),
        "context_ms_p95": round(percentile(tobio_ms, 0.95), 3),
        "raw_sql_ms_p50": round(statistics.median(raw_ms), 3),
        "raw_sql_ms_p95": round(percentile(raw_ms, 0.95), 3),
    }
    out["ratio_p50"] = round(out["context_ms_p50"] / out["raw_sql_ms_p50"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
