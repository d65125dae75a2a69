"""Swipes on a large history: choosing another alternative of an agent's latest reply, and asking for one more.

A DuckDB file with 1,000,000 messages over 1,000 threads (bench/history.py's rows), then a kernel on it
with a persona on a scripted model (no model time) and the emotion and memory modules: one exchange,
then `message retry` (withdraw the reply, put the state back, answer again, to the new reply posted) and
`message swipe` back and forth (pushes moved, state restored, modules told). A swipe writes a few rows,
but finds the turn and moves pushes by scanning `messages` and `pushes` (DuckDB keeps no secondary
index, tables.py), so its time grows with the database. Prints one JSON object; `--quick` uses 100,000.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from history import percentile, populate

from tobio.config.schema import KernelConfig
from tobio.conversation import Conversation
from tobio.db.database import Database
from tobio.kernel import Kernel

REPLIES = ["What a lovely day!", "I hate this weather.", "Cheese and pickles."]
CHANNEL = "dm.user.ada"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 messages instead of 1,000,000")
    parser.add_argument("--swipes", type=int, default=30)
    parser.add_argument("--retries", type=int, default=5)
    args = parser.parse_args()
    messages, threads = (100_000, 1_000) if args.quick else (1_000_000, 1_000)
    swipes, retries = (10, 3) if args.quick else (args.swipes, args.retries)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"duckdb:///{Path(tmp) / 'swipe.duckdb'}"
        db = Database(url)
        db.open()
        began = time.perf_counter()
        populate(db, messages, threads)
        db.call_sync(lambda conn: conn.exec_driver_sql("UPDATE agents SET status = 'killed'"))  # rows, not agents to start
        build_s = time.perf_counter() - began
        db.close()
        providers = {"s": {"type": "scripted", "replies": REPLIES, "embed_dim": 64}}
        models = {"chat-default": {"provider": "s", "model": "x", "purpose": "chat"},
                  "embed": {"provider": "s", "model": "x", "purpose": "embed"}}
        config = KernelConfig(modules=["scripted", "models", "persona", "emotion", "memory"], providers=providers, models=models,
                              base_dir=Path(tmp), settings={"emotion": {"appraiser": "lexicon"},
                                                            "memory": {"summarize": False, "tokenizer_model": "chat-default"}})
        kernel = Kernel(config, database=url).start()
        try:
            (Path(tmp) / "p.yaml").write_text("name: Ada\ndescription: A friend.\n")
            (Path(tmp) / "ada.yaml").write_text("name: ada\ntype: persona\npersona: p.yaml\n")
            kernel.run(f"agent spawn {Path(tmp) / 'ada.yaml'}")

            async def talk() -> None:
                async with Conversation(kernel, "ada") as conversation:
                    await (await conversation.prompt("How is the weather?")).wait(timeout=60)

            kernel.call(talk())
            retry_ms = []
            for _ in range(retries):
                t = time.perf_counter()
                kernel.run(f"message retry {CHANNEL}")
                retry_ms.append((time.perf_counter() - t) * 1000)
            alternatives = len(kernel.run(f"message alternatives {CHANNEL}").rows or [])
            swipe_ms = []
            for i in range(swipes):
                t = time.perf_counter()
                kernel.run(f"message swipe {CHANNEL} {i % alternatives + 1}")
                swipe_ms.append((time.perf_counter() - t) * 1000)
        finally:
            kernel.close()
    print(json.dumps({
        "messages": messages,
        "threads": threads,
        "build_s": round(build_s, 2),
        "alternatives": alternatives,
        "retry_ms_p50": round(statistics.median(retry_ms), 2),
        "retry_ms_max": round(max(retry_ms), 2),
        "swipe_ms_p50": round(statistics.median(swipe_ms), 2),
        "swipe_ms_p95": round(percentile(swipe_ms, 0.95), 2),
    }))


if __name__ == "__main__":
    main()
