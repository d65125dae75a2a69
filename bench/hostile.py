"""Hostile input against a real kernel: the kernel loop's longest stall while each class is processed.

A real kernel (scripted provider, real DuckDB in a temp dir) with persona, emotion and lore loaded. A
probe task on the kernel's loop sleeps 5 ms again and again and records how much later than asked it
wakes: that overshoot is how long something else held the loop (every agent, every front end waits as
long). For each class of hostile input, driven through the path users hit (a message posted to a
persona whose prompt scans the lorebook, fills the card's macros and appraises the text; commands for
imports), it reports the longest stall, the peak RSS growth, and whether the outcome was right (a
reply came; an import was refused in one line, or done). Goal: every class at most 100 ms.

    python bench/hostile.py            # full-size inputs (tens of seconds)
    python bench/hostile.py --quick    # smaller inputs (seconds), what tests/test_bench_hostile.py runs

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_MS = 100.0
PROBE_S = 0.005


class LoopProbe:
    """Sleeps PROBE_S on the kernel's loop forever; `worst` is the largest overshoot since `reset`."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(PROBE_S)
            self.worst = max(self.worst, loop.time() - asked - PROBE_S)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def reset(self) -> None:
        self.worst = 0.0


class RssPeak:
    """The process's resident memory, sampled every 5 ms on a thread of its own; `peak` since `reset`."""

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def reset(self) -> None:
        self.base = self.peak = self._rss()

    def grown_mb(self) -> float:
        return max(0, self.peak - self.base) / 2**20

    def stop(self) -> None:
        self._stop.set()


# --- hostile inputs -------------------------------------------------------------------------------

def catastrophic_book(quick: bool) -> dict[str, Any]:
    """A small World Info file of keys that backtrack for ever on a run of `a` (none of them refused by
    shape: overlapping alternatives), as primary, secondary and decorator keys."""
    bad = ["/(a|aa)+$/", "/(a|a?)+b/", "/^(aa|a)*c$/", "/(a|ab|aa)+z/", "/(a|aa|aaa)+!$/"]
    entries = {}
    for i in range(8 if quick else 24):
        keys = [f"{k[:-1]}{i}/" if k.endswith("$/") else k for k in bad]
        entries[str(i)] = {"uid": i, "key": keys, "keysecondary": bad, "selective": True,
                           "content": f"@@additional_keys {','.join(bad)}\nLore {i}."}
    return {"entries": entries}


def unclosed_macros(size: int) -> str:
    units = ["{{//", "{{roll:", "{{random:", "{{pick", "{{reverse:", "{{", "{{datetimeformat ", "\n\n\n", "}"]
    text, rng = [], random.Random(7)
    while sum(map(len, text)) < size:
        text.append(rng.choice(units) + "x" * rng.randint(0, 3))
    return "".join(text)[:size]


def long_message(size: int) -> str:
    words = "I love this! What a terrible, awful day. You are wonderful and kind but I HATE waiting. ".split()
    rng = random.Random(3)
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < size:
        out.append(rng.choice(words))
    return " ".join(out)[:size]


def chat_file(path: Path, speakers: int, messages: int) -> Path:
    lines = [json.dumps({"user_name": "User", "character_name": "Crowd", "create_date": "2024-01-01 @10h 00m 00s 000ms",
                         "chat_metadata": {}})]
    for i in range(messages):
        who = i % speakers
        lines.append(json.dumps({"name": f"Person {who}", "is_user": True, "is_system": False,
                                 "send_date": 1_700_000_000_000 + i * 1000, "mes": f"line {i} " + "blah " * 10}))
    path.write_text("\n".join(lines) + "\n")
    return path


def charx_bomb(path: Path, members: int) -> Path:
    """A CHARX whose members each compress about 50 to 1 (under the per-member ratio guard), and all
    together unpack to far more than the archive is worth."""
    buffer = io.BytesIO()
    chunk = os.urandom(16 * 1024) * 64  # 1 MB that deflate shrinks ~60x
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", json.dumps({"spec": "chara_card_v3", "spec_version": "3.0",
                                                  "data": {"name": "Bomb", "description": "boom"}}))
        for i in range(members):
            archive.writestr(f"assets/other/blob{i}.bin", chunk)
    path.write_bytes(buffer.getvalue())
    return path


# --- the run --------------------------------------------------------------------------------------

def wait_for(check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError("the kernel did not finish this class in time")
        time.sleep(0.01)
    return value


def run(quick: bool) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import yaml

    from tobio.config.schema import KernelConfig
    from tobio.errors import TobioError
    from tobio.kernel import Kernel

    scale = 4 if quick else 1
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ["TOBIO_DATA_DIR"] = str(base / "data")
        config = KernelConfig(modules=["scripted", "models", "persona", "emotion", "lore"], log_level="ERROR",
                              providers={"s": {"type": "scripted", "replies": ["Fine."]}},
                              models={"chat-default": {"provider": "s", "model": "x"}}, base_dir=base)
        kernel = Kernel(config, database=f"duckdb:///{base}/hostile.duckdb").start()
        probe, memory = LoopProbe(), RssPeak()
        results: dict[str, dict[str, Any]] = {}

        def persona(name: str, channel: str, description: str = "A calm person.") -> Any:
            (base / f"{name}.persona.yaml").write_text(yaml.safe_dump({"name": name.title(), "description": description}))
            (base / f"{name}.yaml").write_text(yaml.safe_dump({
                "name": name, "type": "persona", "persona": str(base / f"{name}.persona.yaml"), "channels": [channel],
                "stream": False, "prefill": False}))
            kernel.run(f"agent spawn {base / f'{name}.yaml'}")
            return kernel.agents.live[name]

        def post(channel: str, text: str) -> None:
            async def go() -> None:
                person = await kernel.agents.ensure_user("tester", (channel,))
                await kernel.transport.post(channel, text, sender=person, role="user")

            kernel.call(go())

        def measure(name: str, work: Callable[[], bool]) -> None:
            kernel.call(kernel.flush())
            time.sleep(0.05)
            probe.reset()
            memory.reset()
            started = time.perf_counter()
            try:
                ok = bool(work())
                error = None
            except Exception as exc:  # a class that breaks is reported, not fatal to the bench
                ok, error = False, f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
            stall = probe.worst * 1000
            results[name] = {"stall_ms": round(stall, 1), "peak_mb": round(memory.grown_mb(), 1),
                             "seconds": round(time.perf_counter() - started, 2), "ok": ok and stall <= GOAL_MS}
            if error:
                results[name]["error"] = error

        def replies(agent: Any, before: int) -> Callable[[], bool]:
            return lambda: agent.handled > before

        try:
            kernel.call(probe.start())
            # the personas, warmed up with an ordinary message (imports, lexicons, first prompts)
            sage = persona("sage", "lore")
            book = base / "evil.json"
            book.write_text(json.dumps(catastrophic_book(quick)))
            kernel.run(f"lore import {book} --name evil")
            kernel.run("lore attach evil --channel lore")
            poet = persona("poet", "macros", unclosed_macros(80_000 // scale))
            crowd = [persona(f"p{i}", "crowd") for i in range(2 if quick else 4)]
            rules = base / "rules.yaml"
            rules.write_text(yaml.safe_dump({"name": "rules", "type": "scripted", "channels": ["rules"],
                                             "rules": [{"match": "(a|aa)+$", "reply": "matched"},
                                                       {"match": "(x|xx)+y", "reply": "x"}], "replies": ["no rule"]}))
            kernel.run(f"agent spawn {rules}")
            ruled = kernel.agents.live["rules"]
            for channel, agents in (("lore", [sage]), ("macros", [poet]), ("crowd", crowd), ("rules", [ruled])):
                counts = [a.handled for a in agents]
                post(channel, "hello there")
                wait_for(lambda: all(a.handled > c for a, c in zip(agents, counts)))

            # an ordinary message first: what the machine's own noise costs (other processes share the CPU)
            measure("baseline", lambda: (n := sage.handled, post("lore", "good morning"), wait_for(replies(sage, n)))[-1])
            measure("lorebook", lambda: (n := sage.handled, post("lore", "a" * (30_000 // scale) + "!"),
                                         wait_for(replies(sage, n)))[-1])
            measure("macros", lambda: (n := poet.handled, post("macros", "tell me about you"),
                                       wait_for(replies(poet, n)))[-1])

            def appraise() -> bool:
                counts = [a.handled for a in crowd]
                post("crowd", long_message(60_000 // scale))
                return bool(wait_for(lambda: all(a.handled > c for a, c in zip(crowd, counts))))

            measure("appraisal", appraise)
            measure("scripted_rule", lambda: (n := ruled.handled, post("rules", "a" * (40_000 // scale) + "b"),
                                              wait_for(replies(ruled, n)))[-1])

            def refused(line: str) -> bool:
                try:
                    kernel.run(line)
                except TobioError as exc:
                    return "\n" not in str(exc)
                return False

            crowded = chat_file(base / "crowded.jsonl", 500, 5000 // scale)
            measure("chat_speakers", lambda: refused(f"transcript import {crowded} --channel st.crowded"))
            big = chat_file(base / "big.jsonl", 12, 20_000 // scale)
            measure("chat_import", lambda: "imported" in kernel.run(f"transcript import {big} --channel st.big").text)
            bomb = charx_bomb(base / "bomb.charx", 120 // scale)

            def no_bomb() -> bool:
                ok = refused(f"persona import {bomb}")
                written = sum(p.stat().st_size for p in (base / "data").rglob("*") if p.is_file() and "charx" in p.parts)
                return ok and written == 0 and not (base / "personas" / "bomb.yaml").exists()

            measure("charx_bomb", no_bomb)
        finally:
            kernel.call(probe.stop())
            memory.stop()
            kernel.close()
    worst = max(r["stall_ms"] for r in results.values())
    return {"max_stall_ms": worst, "goal_ms": GOAL_MS, "quick": quick, "ok": all(r["ok"] for r in results.values()),
            "classes": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs: seconds, for tests")
    args = parser.parse_args()
    print(json.dumps(run(args.quick)))


if __name__ == "__main__":
    main()
