"""Time to first token on the embedded model over a long chat and a two-persona scene, next to the cost
of evaluating only the turn's new tokens: how close the KV cache and the stable prompt layout get a
turn to "read only what is new".

A 100-turn chat with `tobio` (configs/kernel.yaml, every module loaded) and a 40-turn scene
(configs/scenes/station.yaml) with fixed seeds. For each turn the run records prompt and cached
tokens; afterwards the same number of new tokens is evaluated alone on the same loaded model, from
an empty context. Prints one JSON object:

- ttft_ms_p50_turn_100: median TTFT of the last ten chat turns; new_tokens_eval_ms_p50: median time to
  evaluate those turns' uncached tokens alone; ratio: the two divided (goal <= 2);
- cache_reuse: cached / prompt tokens, mean over turns 10 to 100 (goal >= 0.8);
- scene_*: the same over the scene's last ten turns, and its reuse over turns 5 to 40 (goal >= 0.7);
- resample_share: runs that resampled a stale reply, per turn (each turn is measured by its first run);
- prefill_tokens_per_turn: tokens the agents' prefills read after their replies (the next turn's opening,
  read before the next line arrives), per turn: work moved off the reply's path, not saved. Here each
  line follows the last reply at once, so a prefill often runs while the next line's prompt is built.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LINES = [
    "Hi! Who are you?", "What do you like to do on a rainy day?", "Tell me about steam trains.",
    "Which train is the fastest you know?", "I feel a bit tired today.", "What should I call you?",
    "Do you have friends at the station?", "What is your favourite colour?", "Can you tell me a short story?",
    "Where would you travel by train?", "My name is Ada and my dog is called Biscuit.", "What did I tell you about my dog?",
]
FILLER = "The night train waited at platform four while the conductor checked the tickets of every passenger. "


def tuned_config(max_tokens: int, seed: int) -> Any:
    """configs/kernel.yaml with chat bundles on a fixed seed and a short reply length."""
    from tobio.config.schema import load_kernel_config

    config = load_kernel_config(ROOT / "configs" / "kernel.yaml")
    models = {
        name: spec.model_copy(update={"params": {**spec.params, "seed": seed, "max_tokens": max_tokens}})
        if spec.purpose == "chat" else spec
        for name, spec in config.models.items()
    }
    return config.model_copy(update={"models": models, "log_level": "WARNING"})


async def chat(kernel: Any, agent: str, turns: int, read_s: float = 0.0) -> None:
    """Talk to `agent` in its DM channel, one line at a time, waiting for each reply and then `read_s`
    (a person reading it before typing the next line)."""
    from tobio.agents.conversation import exchange

    for i in range(turns):
        await exchange(kernel, agent, f"{LINES[i % len(LINES)]} ({i + 1})")
        if read_s:
            await asyncio.sleep(read_s)


def chat_runs(kernel: Any, where: str) -> list[tuple[int, int, float]]:
    """(prompt tokens, cached tokens, ttft ms) of each turn's first chat run matching `where`, in order.

    A reply found stale is resampled (tobio/persona/freshness.py): those runs read the same prompt again,
    all of it cached, and would flatter the reuse; a turn is measured by the run that first answered it."""
    rows = kernel.run(
        "sql SELECT r.id, r.prompt_tokens, r.cached_tokens, r.ttft_ms FROM runs r JOIN threads t ON t.id = r.thread_id "
        f"WHERE r.purpose = 'chat' AND r.status = 'completed' AND {where} ORDER BY r.id;"
    ).rows
    resamples = resample_runs(kernel)
    return [(int(p or 0), int(c or 0), float(t or 0.0)) for i, p, c, t in rows if int(i) not in resamples]


def resample_runs(kernel: Any) -> set[int]:
    """Ids of the runs that resampled a stale reply (each `resample` step names the run it made)."""
    rows = kernel.run("sql SELECT result FROM steps WHERE kind = 'resample';").rows
    results = [json.loads(r) if isinstance(r, str) else r for (r,) in rows]
    return {int(r["run"]) for r in results if isinstance(r, dict) and r.get("run") is not None}


def new_token_eval_ms(kernel: Any, counts: list[int]) -> list[float]:
    """Evaluate each count of new tokens alone, from an empty context, on the loaded chat model."""
    from tobio.models.module import models_of

    bundle = models_of(kernel).get("chat-default")
    loaded = bundle.provider.chat_model(bundle.provider_model)
    with loaded.lock:
        llama = loaded.engine.llama
        text = llama.tokenize((FILLER * 200).encode())
        out = []
        for n in counts:
            llama.reset()
            began = time.perf_counter()
            llama.eval(text[:max(1, n)])
            out.append((time.perf_counter() - began) * 1000)
        llama.reset()
    return out


def figures(kernel: Any, runs: list[tuple[int, int, float]], reuse_from: int, prefix: str) -> dict[str, float]:
    last = runs[-10:]
    ttft = statistics.median(t for _, _, t in last)
    alone = statistics.median(new_token_eval_ms(kernel, [p - c for p, c, _ in last]))
    reuse = [c / p for p, c, _ in runs[reuse_from - 1:] if p]
    return {
        f"{prefix}ttft_ms_p50{'_turn_100' if not prefix else ''}": round(ttft, 1),
        f"{prefix}new_tokens_eval_ms_p50": round(alone, 1),
        f"{prefix}ratio": round(ttft / alone, 2) if alone else float("inf"),
        f"{prefix}cache_reuse": round(statistics.mean(reuse), 3) if reuse else 0.0,
        f"{prefix}prompt_tokens_last": runs[-1][0],
    }


def resample_share(kernel: Any) -> float:
    """Resampled runs per first run: what repetition control adds to the model's work."""
    firsts = len(chat_runs(kernel, "TRUE"))
    return round(len(resample_runs(kernel)) / firsts, 3) if firsts else 0.0


def prefill_tokens_per_turn(kernel: Any) -> float:
    """Tokens prefill runs evaluated, per first chat run."""
    rows = kernel.run("sql SELECT prompt_tokens, cached_tokens FROM runs WHERE purpose = 'prefill' AND status = 'completed';").rows
    firsts = len(chat_runs(kernel, "TRUE"))
    return round(sum(int(p or 0) - int(c or 0) for p, c in rows) / firsts, 1) if firsts else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--scene-turns", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--read-s", type=float, default=0.0,
                        help="seconds the chat's user waits after each reply before the next line (default 0: at once, "
                             "the worst case for prefills); the scene's agents always answer at once")
    parser.add_argument("--quick", action="store_true", help="4 chat and 6 scene turns of 8 tokens: it runs, its numbers mean little")
    args = parser.parse_args()
    if args.quick:
        args.turns, args.scene_turns, args.max_tokens = 4, 6, 8
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tobio.kernel import Kernel

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TOBIO_DATA_DIR"] = tmp
        began = time.perf_counter()
        with Kernel(tuned_config(args.max_tokens, args.seed), database=f"duckdb:///{tmp}/latency.duckdb") as kernel:
            kernel.call(chat(kernel, "tobio", args.turns, args.read_s))
            kernel.run(f"scene run {ROOT / 'configs' / 'scenes' / 'station.yaml'} --turns {args.scene_turns}")
            kernel.call(kernel.flush())
            talk = chat_runs(kernel, "t.channel LIKE 'dm.%'")
            scene = chat_runs(kernel, "t.channel = 'platform'")
            out: dict[str, Any] = {"turns": len(talk), "scene_turns": len(scene), "read_s": args.read_s}
            out.update(figures(kernel, talk, 10, ""))
            out.update(figures(kernel, scene, 5, "scene_"))
            out["resample_share"] = resample_share(kernel)
            out["prefill_tokens_per_turn"] = prefill_tokens_per_turn(kernel)
        out["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
