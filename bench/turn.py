"""One chat turn's cost: Tobio's own overhead next to the model's time, on the embedded model.

50 turns with a persona agent (user posts → context built → run recorded → reply streamed → posted
durably). Per turn, overhead = turn wall time − time inside the model's streams (all of the turn's runs: a
stale reply's resample is model time). In the same run, each
turn's exact prompt also goes straight to llama-cpp-python (same loaded model, same parameters,
temperature 0) to compare tokens/s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tobio.models.module import models_of, runs_of

LINES = [
    "Hi! Who are you?", "What do you like to do?", "Tell me about steam trains.", "Which train is the fastest?",
    "I feel a bit tired today.", "What should I call you?", "Do you have friends?", "What is your favourite colour?",
    "Can you tell me a short story?", "Where would you travel by train?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="2 turns (the suite runs it)")
    args = parser.parse_args()
    if args.quick:
        args.turns = 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tobio.config.schema import KernelConfig
    from tobio.kernel import Kernel
    from tobio.providers import local

    params = {"temperature": 0.0, "max_tokens": 64, "seed": 1}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TOBIO_DATA_DIR"] = tmp
        persona = Path(tmp) / "tobio.yaml"
        persona.write_text("name: Tobio\ndescription: A warm artificial person who loves trains.\n")
        agent = Path(tmp) / "agent.yaml"
        # No prefill: the direct path below drives the model from this thread, and both paths start from an empty cache.
        agent.write_text(f"name: tobio\ntype: persona\npersona: {persona}\nchannels: [lobby]\nprefill: false\n"
                         f"params: {json.dumps(params)}\n")
        kernel = Kernel(KernelConfig(modules=["models", "persona"], log_level="WARNING"), database=f"duckdb:///{tmp}/turn.duckdb").start()
        try:
            kernel.run(f"agent spawn {agent}")
            tobio = kernel.agents.live["tobio"]
            # Load the model once before timing anything (both paths share this copy).
            kernel.call(models_of(kernel).get("chat-default").run([{"role": "user", "content": "hi"}], params={"max_tokens": 2}).wait())
            bundle = models_of(kernel).get("chat-default")
            loaded = bundle.provider.chat_model(bundle.provider_model)
            llama = loaded.engine.llama
            if loaded.states is not None:
                loaded.states.capacity = 0  # both paths evaluate every prompt: this measures overhead, not saved KV states

            async def one_turn(text: str) -> tuple[float, object]:
                user = await kernel.agents.ensure_user("user", channels=("lobby",))
                done = asyncio.Event()
                stop = user.watch(lambda d: done.set() if d.message.sender == "tobio" else None)
                began = time.perf_counter()
                await user.say("lobby", text, role="user")
                await done.wait()
                elapsed = time.perf_counter() - began
                stop()
                run = kernel.runs_done[tobio.last_run]  # type: ignore[attr-defined]
                return elapsed, run

            kernel.runs_done = {}  # type: ignore[attr-defined]
            original = runs_of(kernel).create

            def remember(*a: Any, **kw: Any) -> Any:  # keep each run object for the numbers
                run = original(*a, **kw)
                kernel.runs_done[run.id] = run  # type: ignore[attr-defined]
                return run

            runs_of(kernel).create = remember  # type: ignore[method-assign]
            turn_ms, model_ms, tobio_tps, direct_tps = [], [], [], []
            lengths: list[tuple[int, int]] = []
            for i in range(args.turns):
                # Both paths start from an empty KV cache: otherwise the second call on the same prompt
                # skips prompt evaluation entirely and the comparison measures llama.cpp's cache.
                llama.reset()
                seen = set(kernel.runs_done)  # type: ignore[attr-defined]
                elapsed, run = kernel.call(one_turn(LINES[i % len(LINES)]))
                turn_ms.append(elapsed * 1000)
                # Every run of the turn is model time: a stale reply's resample (tobio/persona/freshness.py)
                # is a second generation, not Tobio's overhead.
                model_ms.append(sum(r.model_ms for k, r in kernel.runs_done.items() if k not in seen))  # type: ignore[attr-defined]
                tokens = run.completion_tokens or 0
                tobio_tps.append(tokens / (run.latency_ms / 1000))
                # The same prompt, straight to llama-cpp-python.
                llama.reset()
                began = time.perf_counter()
                direct_tokens = 0
                same = {k: v for k, v in run.request.params.items() if k in local.CHAT_PARAMS}  # the run's exact parameters
                for part in llama.create_chat_completion(messages=run.request.messages, stream=True, **same):
                    if part["choices"][0].get("delta", {}).get("content"):
                        direct_tokens += 1
                direct_tps.append(direct_tokens / (time.perf_counter() - began))
                lengths.append((tokens, direct_tokens))
        finally:
            kernel.close()
    overhead = [t - m for t, m in zip(turn_ms, model_ms)]
    out = {
        "turns": args.turns,
        "model_ms_mean": round(statistics.mean(model_ms), 1),
        "turn_ms_mean": round(statistics.mean(turn_ms), 1),
        "overhead_ms_mean": round(statistics.mean(overhead), 2),
        "overhead_ms_p50": round(statistics.median(overhead), 2),
        "overhead_pct": round(100 * sum(overhead) / sum(model_ms), 2),
        "tokens_per_s_tobio": round(statistics.mean(tobio_tps), 1),
        "tokens_per_s_direct": round(statistics.mean(direct_tps), 1),
        "tokens_per_s_ratio": round(statistics.mean(tobio_tps) / statistics.mean(direct_tps), 3),
        "same_length_turns": sum(a == b for a, b in lengths),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
