"""Transport throughput: post → durable (group commit) → delivered, with 1, 10 and 100 subscribers.

Baseline, same run: the same message and push rows bulk-inserted into DuckDB straight from typed DataFrames,
in batches of the size the group-commit writer actually used. Prints one JSON object.

`handled_overhead_us_per_msg`: what recording handling costs, per message an agent handles (10
subscribers): the time to consume the same inboxes with durable handled marks (cursors), minus the
time with the cursor switched off, divided by the messages handled. Posting itself writes no mark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tobio.agents.base import Agent
from tobio.agents.scripted import ScriptedConfig
from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel

POSTERS = 1024  # concurrent posting coroutines (e.g. agents); see --posters


def tobio_rate(workdir: Path, subscribers: int, messages: int, marks: bool = True) -> dict[str, float]:
    """Messages/s through the kernel: concurrent posters, each post awaited until durable + delivered.

    `marks=False` consumes without recording handling (only to measure what recording costs)."""
    url = f"duckdb:///{workdir / f'transport_{subscribers}_{int(marks)}.duckdb'}"
    kernel = Kernel(KernelConfig(modules=["scripted"], log_level="WARNING"), database=url).start()
    try:
        for i in range(subscribers):
            kernel.call(kernel.agents.spawn(ScriptedConfig(name=f"sub{i}", type="scripted", channels=["bench"])))
        agents = list(kernel.agents.live.values())
        for agent in agents:  # count deliveries in the inbox; agents consume after the clock stops
            agent.pause()
            if not marks:  # every thread looks handled already, so no cursor is written (state still is)
                agent.cursors = _AlwaysHandled()

        async def poster(start: int, count: int) -> None:
            post = kernel.transport.post
            for i in range(start, start + count):
                await post("bench", f"message number {i}", role="user")

        async def run() -> float:
            per = messages // POSTERS
            began = time.perf_counter()
            await asyncio.gather(*(poster(p * per, per) for p in range(POSTERS)))
            return time.perf_counter() - began

        batches_before = kernel.writer.batches
        elapsed = kernel.call(run())
        sent = (messages // POSTERS) * POSTERS
        delivered = sum(a.delivered for a in agents)
        assert delivered == sent * subscribers, (delivered, sent, subscribers)
        batches = kernel.writer.batches - batches_before
        # Now let the agents work through their inboxes: the cost of consuming, reported separately.
        began = time.perf_counter()
        for agent in agents:
            agent.resume()
        kernel.call(_drained(agents))
        kernel.call(kernel.writer.flush())  # the handled marks are durable too
        consumed = time.perf_counter() - began
        return {"seconds": elapsed, "msgs": sent, "batches": batches, "consume_seconds": consumed}
    finally:
        kernel.close()


class _AlwaysHandled(dict[int, float]):
    """Cursors that say every thread is handled already (no mark is ever written)."""

    def get(self, key: int, default: object = None) -> float:  # type: ignore[override]
        return float("inf")


async def _drained(agents: list[Agent]) -> None:
    while any(a.handled < a.delivered for a in agents):
        await asyncio.sleep(0.005)


def raw_rate(workdir: Path, subscribers: int, messages: int, batches: int) -> float:
    """Seconds to bulk-insert the same rows (messages + pushes) from typed NumPy columns, in the same number of batches."""
    import duckdb
    import numpy as np

    path = workdir / f"raw_{subscribers}.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE messages (id BIGINT PRIMARY KEY, agent_id BIGINT, thread_id BIGINT, channel VARCHAR, role VARCHAR,"
        " created_at TIMESTAMP, content VARCHAR, metadata JSON, reply_to BIGINT)"  # as Tobio's `messages`
    )
    con.execute("CREATE TABLE pushes (thread_id BIGINT, message_id BIGINT)")  # as Tobio's on DuckDB: no key (tables.py)
    per_batch = max(1, messages // max(1, batches))
    now = datetime.now()
    began = time.perf_counter()
    for start in range(0, messages, per_batch):
        ids = list(range(start, min(messages, start + per_batch)))
        nulls = np.full(len(ids), None, dtype=object)
        con.register("m", {
            "id": np.array(ids, dtype=np.int64), "agent_id": nulls, "thread_id": nulls,
            "channel": np.array(["bench"] * len(ids), dtype=object), "role": np.array(["user"] * len(ids), dtype=object),
            "created_at": np.full(len(ids), np.datetime64(now, "us")),
            "content": np.array([f"message number {i}" for i in ids], dtype=object), "metadata": nulls, "reply_to": nulls,
        })
        con.register("p", {"thread_id": np.array([t for _ in ids for t in range(subscribers)], dtype=np.int64),
                           "message_id": np.array([i for i in ids for _ in range(subscribers)], dtype=np.int64)})
        con.execute("BEGIN")
        con.execute("INSERT INTO messages SELECT * FROM m")
        con.execute("INSERT INTO pushes SELECT * FROM p")
        con.execute("COMMIT")
    elapsed = time.perf_counter() - began
    con.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per subscriber count")
    parser.add_argument("--quick", action="store_true", help="a smaller run that takes seconds")
    parser.add_argument("--posters", type=int, default=POSTERS, help="concurrent posters, each awaiting its acks")
    args = parser.parse_args()
    globals()["POSTERS"] = args.posters
    messages = 2_000 if args.quick else args.messages
    out: dict[str, float | int] = {"messages": messages, "posters": POSTERS}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TOBIO_DATA_DIR", tmp)
        for subs in (1, 10, 100):
            n = messages if subs < 100 else max(POSTERS, messages // 4)
            got = tobio_rate(Path(tmp), subs, n)
            raw_s = raw_rate(Path(tmp), subs, got["msgs"], got["batches"])
            rate = got["msgs"] / got["seconds"]
            out[f"msgs_per_s_{subs}"] = round(rate, 1)
            out[f"raw_msgs_per_s_{subs}"] = round(got["msgs"] / raw_s, 1)
            out[f"batches_{subs}"] = got["batches"]
            out[f"consumed_msgs_per_s_{subs}"] = round(got["msgs"] / got["consume_seconds"], 1)
            if subs == 10:
                out["raw_rows_per_s"] = round(got["msgs"] * (1 + subs) / raw_s, 1)
                out["overhead_us_per_msg"] = round((got["seconds"] - raw_s) / got["msgs"] * 1e6, 2)
                out["ratio_to_raw_10"] = round(rate / (got["msgs"] / raw_s), 3)
                bare = tobio_rate(Path(tmp), subs, n, marks=False)
                handled = got["msgs"] * subs
                out["handled_overhead_us_per_msg"] = round((got["consume_seconds"] - bare["consume_seconds"]) / handled * 1e6, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
