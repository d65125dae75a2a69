"""Prompt size over a long conversation: every persona prompt must stay within memory's token budget.

A persona agent (scripted chat model: deterministic, counts tokens as words) talks with a user for
--turns turns. Each turn builds the agent's prompt through the memory hook, runs the model on it (the
provider reports the prompt tokens it saw) and posts the reply. Prints one JSON object: the largest
prompt, the budget, memory's per-turn overhead (building the prompt: memory reads the history, fits it to budget, retrieves) next to the model's own time per turn.
The kernel's work per turn must stay flat as the conversation grows (goal: last tenth <= 1.2x the first):
`*_growth` is the last tenth's mean over the first's, and `parts_ms` splits a turn (posting the user's
message, building the prompt, running the model, posting the reply) so a growth can be placed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.memory.config import MemoryConfig
from tobio.memory.module import MemoryModule
from tobio.memory.service import Memory
from tobio.models.module import models_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=5000)
    parser.add_argument("--budget", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="60 turns: enough for summaries to start (the suite runs it)")
    args = parser.parse_args()
    if args.quick:
        args.turns = 60
    providers = {"s": {"type": "scripted", "replies": ["Indeed, {last}. The mill still turns."], "embed_dim": 256}}
    models = {"m": {"provider": "s", "model": "x", "purpose": "chat"},
              "summarize": {"provider": "s", "model": "x", "purpose": "summarize"},
              "embed": {"provider": "s", "model": "x", "purpose": "embed"}}
    config = MemoryConfig(budget_tokens=args.budget, summary_tokens=args.budget // 8, memory_tokens=args.budget // 6, tokenizer_model="m")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "ada.yaml").write_text("name: Ada\ndescription: A miller who remembers every customer.\npersonality: [warm, precise]\n")
        Path(tmp, "ada-agent.yaml").write_text("name: ada\ntype: persona\npersona: ada.yaml\nmodel: m\nchannels: [mill]\nstream: false\n")
        kernel = Kernel(KernelConfig(modules=["models", "persona"], providers=providers, models=models, log_level="WARNING"),
                        database=f"duckdb:///{tmp}/context.duckdb").start()
        try:
            kernel.modules.register(type("BenchMemory", (MemoryModule,), {"config": config}))
            kernel.run("mod load memory")
            kernel.run(f"agent spawn {tmp}/ada-agent.yaml")
            out = kernel.call(converse(kernel, args.turns), timeout=None)
        finally:
            kernel.close()
    out.update(budget=args.budget, turns=args.turns)
    print(json.dumps(out, indent=2))


async def converse(kernel: Kernel, turns: int) -> dict[str, object]:
    """We play both sides so each turn is measured: prompt (memory hook), model run, reply."""
    ada = kernel.agents.live["ada"]
    ada.pause()  # its inbox fills; we build its prompts ourselves, one per turn
    user = await kernel.agents.ensure_user("visitor", ("mill",))
    thread = kernel.transport.subscription(ada.id, "mill").thread_id
    model = models_of(kernel).get("m")
    memory = Memory.of(kernel)
    prompt_tokens, hook_ms, own_ms, model_ms, turn_ms, post_ms, reply_ms = [], [], [], [], [], [], []
    began = time.perf_counter()
    for i in range(turns):
        t0 = time.perf_counter()
        incoming = await kernel.transport.post("mill", f"visitor {i} asks about sack {i % 37} of {['rye', 'wheat', 'oats'][i % 3]} from farm {i % 11}", sender=user, role="user")
        t_prompt = time.perf_counter()
        prompt = await ada.build_prompt(thread, incoming)  # memory: history read (its source), budget, retrieval
        post_ms.append((t_prompt - t0) * 1000)
        hook_ms.append((time.perf_counter() - t_prompt) * 1000)
        own_ms.append(float(prompt.notes.get("memory", {}).get("ms", 0.0)))  # memory's prompt hook alone (retrieval included)
        t1 = time.perf_counter()
        run = await model.run(prompt.messages(), thread_id=thread, agent_id=ada.id).wait()
        model_ms.append((time.perf_counter() - t1) * 1000)
        prompt_tokens.append(run.prompt_tokens or 0)
        t2 = time.perf_counter()
        await kernel.transport.post("mill", run.text, sender=ada)
        reply_ms.append((time.perf_counter() - t2) * 1000)
        turn_ms.append((time.perf_counter() - t0) * 1000)
    await memory.settle(timeout=600)
    summaries = (await kernel.arun("sql SELECT count(*) FROM summaries")).rows[0][0]
    tenth = max(1, turns // 10)

    def first_last(values: list[float]) -> dict[str, float]:
        first, last = float(np.mean(values[:tenth])), float(np.mean(values[-tenth:]))
        return {"first_tenth": round(first, 2), "last_tenth": round(last, 2), "growth": round(last / first, 2) if first else 0.0}

    return {
        "max_prompt_tokens": max(prompt_tokens), "mean_prompt_tokens": round(float(np.mean(prompt_tokens)), 1),
        "over_budget_turns": sum(t > memory.config.budget_tokens for t in prompt_tokens),
        "memory_ms_per_turn": round(float(np.mean(hook_ms)), 2), "memory_ms_p95": round(float(np.percentile(hook_ms, 95)), 2),
        # Memory's cost must not grow with the conversation: the first tenth of the turns against the last.
        "memory_ms_first_tenth": round(float(np.mean(hook_ms[:tenth])), 2), "memory_ms_last_tenth": round(float(np.mean(hook_ms[-tenth:])), 2),
        "model_ms_per_turn": round(float(np.mean(model_ms)), 2), "turn_ms": round(float(np.mean(turn_ms)), 2),
        "turn_ms_first_tenth": round(float(np.mean(turn_ms[:tenth])), 2), "turn_ms_last_tenth": round(float(np.mean(turn_ms[-tenth:])), 2),
        "turn_growth": first_last(turn_ms)["growth"], "memory_growth": first_last(hook_ms)["growth"],
        "parts_ms": {"post": first_last(post_ms), "prompt": first_last(hook_ms), "memory_hook": first_last(own_ms),
                     "model": first_last(model_ms), "reply": first_last(reply_ms)},
        "summaries": summaries, "seconds": round(time.perf_counter() - began, 1),
        "model": "scripted (words as tokens); the memory hook counts with the same tokenizer",
    }


if __name__ == "__main__":
    main()
