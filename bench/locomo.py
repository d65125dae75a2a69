"""LoCoMo evidence recall: replay each conversation into a kernel, then retrieve for every question.

Each conversation becomes two user agents in one channel (session dates as message times); memory
indexes the turns with the `embed` bundle (all-MiniLM-L6-v2 on the local provider by default). For
every question, memory retrieves the asking agent's top k; recall@k is the share of the question's
evidence turns among them. Baselines in the same run: BM25 over the same turns, and the k most recent
turns, and memory's first stage alone (`first_stage_*`: without the learned ranker, tobio/memory/rank.py).
Summaries are off here (LoCoMo measures retrieval). `--train-ranker NPZ` also collects each question's
candidates and features and reports the ranker's leave-one-conversation-out recall and ablation (write
new weights from the NPZ with `python -m tobio.memory.rank_train NPZ`; dev split only), and beside it
NPZ.ids.json, each question's candidates by dia_id (to try features the code does not compute yet,
joined to the data by conversation), and `search_cross_validated`: the same leave-one-conversation-out
recall through the whole search (what search does after the ranker, spreading a gathering question over
sittings, counts too). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.memory.bm25 import BM25
from tobio.memory.config import MemoryConfig
from tobio.memory.module import MemoryModule
from tobio.memory.rank import FEATURES
from tobio.memory.rank_train import Boosted, Question, fit, has_boosting, save_questions, train
from tobio.memory.service import Memory
from tobio.memory.text import terms

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo_dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
KS = (5, 10)


def session_time(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")


def turn_text(turn: dict[str, Any]) -> str:
    text = turn.get("text", "")
    if turn.get("blip_caption"):
        text += f" [shares a photo: {turn['blip_caption']}]"
    return text


def evidence_ids(qa: dict[str, Any]) -> set[str]:
    return {e for item in qa.get("evidence", []) for e in re.split(r"[;,\s]+", item) if re.fullmatch(r"D\d+:\d+", e)}


def sessions(conversation: dict[str, Any]) -> list[tuple[datetime, list[dict[str, Any]]]]:
    out = []
    for key, turns in conversation.items():
        m = re.fullmatch(r"session_(\d+)", key)
        if m and isinstance(turns, list) and turns:
            out.append((int(m.group(1)), session_time(conversation[f"{key}_date_time"]), turns))
    return [(when, turns) for _, when, turns in sorted(out, key=lambda s: s[0])]


async def replay(kernel: Kernel, index: int, sample: dict[str, Any]) -> tuple[int, dict[int, str], list[str]]:
    """Post every turn; returns the asking agent's id, message id → dia_id, and dia_ids in order."""
    conv = sample["conversation"]
    channel = f"locomo-{index}"
    names = {conv["speaker_a"]: f"a{index}-{conv['speaker_a'].lower()}", conv["speaker_b"]: f"b{index}-{conv['speaker_b'].lower()}"}
    agents = {speaker: await kernel.agents.ensure_user(name, (channel,)) for speaker, name in names.items()}
    dia: dict[int, str] = {}
    order: list[str] = []
    for when, turns in sessions(conv):
        posts = [
            kernel.transport.post(channel, turn_text(t), sender=agents.get(t["speaker"]), role="user",
                                  metadata={"dia_id": t["dia_id"]}, created_at=when + timedelta(seconds=30 * i))
            for i, t in enumerate(turns)
        ]
        for turn, message in zip(turns, await asyncio.gather(*posts)):
            dia[message.id] = turn["dia_id"]
            order.append(turn["dia_id"])
    return agents[conv["speaker_a"]].id, dia, order


def recall(found: list[str], wanted: set[str], k: int) -> float:
    return len(wanted & set(found[:k])) / len(wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=0, help="only the first N conversations")
    parser.add_argument("--quick", action="store_true", help="the first 2 conversations, the ranker linear only (the trees "
                        "choose their rounds inside the training conversations, which takes at least 3): the smoke test")
    parser.add_argument("--linear", action="store_true", help="--train-ranker: the linear ranker only, even with LightGBM there")
    parser.add_argument("--grid", action="store_true", help="also sweep retrieval weights (tune on dev only)")
    parser.add_argument("--ablate", action="store_true", help="also score each retrieval feature switched off")
    parser.add_argument("--train-ranker", type=Path, metavar="NPZ",
                        help="also collect each question's candidates and features here, and cross-validate the ranker "
                             "(write its weights with python -m tobio.memory.rank_train NPZ)")
    parser.add_argument("--candidates", type=int, default=100, help="first-stage candidates per question for --train-ranker")
    args = parser.parse_args()
    samples = json.loads(args.data.read_text())
    if args.limit or args.quick:
        samples = samples[: args.limit or 2]
    trees = has_boosting() and not (args.linear or args.quick)
    config = MemoryConfig(summarize=False)
    bench_memory = type("BenchMemory", (MemoryModule,), {"config": config})

    with tempfile.TemporaryDirectory() as tmp:
        kernel = Kernel(KernelConfig(modules=["models"], log_level="WARNING"), database=f"duckdb:///{tmp}/locomo.duckdb").start()
        try:
            kernel.modules.register(bench_memory)
            kernel.run("mod load memory")
            memory = Memory.of(kernel)
            began = time.perf_counter()
            replays = [kernel.call(replay(kernel, i, s)) for i, s in enumerate(samples)]
            kernel.call(memory.settle(timeout=3600))
            index_s = time.perf_counter() - began
            rows: list[dict[str, Any]] = []
            cached: list[tuple[Any, str, np.ndarray, dict[int, str], set[str], int]] = []
            asked: list[tuple[Any, str, np.ndarray, dict[int, str], set[str], int]] = []  # per collected question, for search_cv
            collected: list[Question] = []
            ids: list[dict[str, Any]] = []  # per collected question, its candidates' dia_ids (for experiments on other features)
            first_stage = config.model_copy(update={"rerank": False})
            for conversation, ((agent_id, dia, order), sample) in enumerate(zip(replays, samples)):
                bm25 = BM25()
                texts = {}
                for _when, turns in sessions(sample["conversation"]):
                    for t in turns:
                        texts[t["dia_id"]] = turn_text(t)
                for dia_id in order:
                    bm25.add(terms(texts[dia_id]))
                kernel.call(memory.index_for(agent_id))  # warm the agent's index (loaded once, like a live agent)
                for qa in sample["qa"]:
                    wanted = evidence_ids(qa)
                    if not wanted:
                        continue
                    t0 = time.perf_counter()
                    hits = kernel.call(memory.search(agent_id, qa["question"], k=max(KS)))
                    ms = (time.perf_counter() - t0) * 1000
                    found = [dia.get(h.item.source_id, "") for h in hits if h.item.kind == "message"]
                    lexical = bm25.scores(terms(qa["question"]))
                    bm25_found = [order[i] for i in np.argsort(-lexical, kind="stable")[: max(KS)]]
                    recent = order[-max(KS):][::-1]
                    row: dict[str, Any] = {"category": CATEGORIES.get(qa["category"], str(qa["category"])), "ms": ms}
                    for k in KS:
                        row[f"recall_at_{k}"] = recall(found, wanted, k)
                        row[f"bm25_recall_at_{k}"] = recall(bm25_found, wanted, k)
                        row[f"recent_recall_at_{k}"] = recall(recent, wanted, k)
                    rows.append(row)
                    vec = np.asarray(kernel.call(memory.embed_model.embed([qa["question"]]))[0], dtype=np.float32)
                    index = memory.indexes[agent_id]
                    first = [dia.get(h.item.source_id, "") for h in index.search(qa["question"], vec, first_stage, max(KS))]
                    for k in KS:
                        row[f"first_stage_recall_at_{k}"] = recall(first, wanted, k)
                    if args.train_ranker:
                        items, features = index.candidates(qa["question"], vec, config, args.candidates)
                        evidence = np.array([dia.get(item.source_id, "") in wanted for item in items], dtype=np.float64)
                        collected.append(Question(features, evidence, len(wanted), conversation))
                        ids.append({"conversation": conversation, "question": qa["question"], "category": qa["category"],
                                    "candidates": [dia.get(item.source_id, "") for item in items]})
                        asked.append((index, qa["question"], vec, dia, wanted, qa["category"]))
                    if args.grid or args.ablate:
                        vec = np.asarray(kernel.call(memory.embed_model.embed([qa["question"]]))[0], dtype=np.float32)
                        cached.append((memory.indexes[agent_id], qa["question"], vec, dia, wanted, qa["category"]))
            result = summarise(rows)
            result.update(questions=len(rows), conversations=len(samples), turns=sum(len(r[2]) for r in replays),
                          index_seconds=round(index_s, 1), embed_model=memory.embed_model.provider_model,
                          config={k: v for k, v in config.model_dump().items() if k.startswith(("w_", "hybrid", "recency", "context", "rerank"))})
            if args.train_ranker:
                save_questions(args.train_ranker, collected, args.candidates)
                args.train_ranker.with_suffix(".ids.json").write_text(json.dumps(ids))
                result["ranker"] = train(collected, args.candidates, out=None, ablate=not args.quick, trees=trees)
                result["ranker"]["search_cross_validated"] = search_cv(collected, asked, config, args.candidates, trees)
            if args.grid:
                result["grid"] = grid(cached)
            if args.ablate:
                result["ablations"] = ablate(cached, config)
        finally:
            kernel.close()
    print(json.dumps(result, indent=2))


def search_cv(collected: list[Question], asked: list[Any], config: MemoryConfig, candidates: int, trees: bool) -> dict[str, Any]:
    """Leave-one-conversation-out recall through the whole search, not only the ranker's reordering of the
    candidates (rank_train's estimate): what search does after the ranker (spreading a gathering question
    over sittings) counts too. Each conversation is searched with a model fitted on the others: the linear
    one, or with `trees` (LightGBM installed) the linear one plus the trees rank_train would ship."""
    per: dict[int, dict[int, list[float]]] = {k: defaultdict(list) for k in KS}
    groups = frozenset(q.group for q in collected)
    boosted = Boosted(collected, candidates) if trees else None
    for group in sorted(groups):
        if boosted is None:
            ranker = fit([q for q in collected if q.group != group], range(len(FEATURES)), candidates)
        else:  # the model rank_train ships, its rounds chosen inside the other conversations
            ranker = boosted.model(groups - {group})[0]
        for q, (index, question, vec, dia, wanted, category) in zip(collected, asked):
            if q.group == group:
                found = [dia.get(h.item.source_id, "") for h in index.search(question, vec, config, max(KS), ranker=ranker)]
                for k in KS:
                    per[k][category].append(recall(found, wanted, k))
    out: dict[str, Any] = {f"recall_at_{k}": round(float(np.mean([v for vs in per[k].values() for v in vs])), 4) for k in KS}
    out["by_category"] = {CATEGORIES[c]: {f"recall_at_{k}": round(float(np.mean(per[k][c])), 4) for k in KS}
                          for c in sorted(per[max(KS)])}
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in rows[0] if k.startswith(("recall", "first_stage", "bm25", "recent"))]
    mean = lambda rs, k: round(float(np.mean([r[k] for r in rs])), 4)  # noqa: E731
    out: dict[str, Any] = {k: mean(rows, k) for k in keys}
    out["ms_per_query"] = round(float(np.mean([r["ms"] for r in rows])), 2)
    out["ms_per_query_p50"] = round(float(np.percentile([r["ms"] for r in rows], 50)), 2)
    out["ms_per_query_p95"] = round(float(np.percentile([r["ms"] for r in rows], 95)), 2)
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["category"]].append(r)
    out["by_category"] = {c: {"questions": len(rs), **{k: mean(rs, k) for k in keys}} for c, rs in sorted(by.items())}
    return out


ABLATIONS: dict[str, dict[str, Any]] = {
    "no sitting prior": {"w_sitting": 0.0},
    "no date match": {"w_date": 0.0},
    "neither (hybrid with context only)": {"w_sitting": 0.0, "w_date": 0.0},
    "no conversation context": {"context_turns": 0},
    "BM25 context of 1 turn": {"context_turns": 1},
    "no importance": {"w_importance": 0.0},
    "no recency": {"w_recency": 0.0},
    "embedding only": {"hybrid_alpha": 1.0},
    "BM25 only": {"hybrid_alpha": 0.0},
}


def score(cached: list[Any], config: MemoryConfig) -> dict[str, Any]:
    """recall@10 overall and per category of the cached indexes and questions under `config`."""
    per: dict[int, list[float]] = defaultdict(list)
    for index, question, vec, dia, wanted, category in cached:
        hits = index.search(question, vec, config, 10)
        per[category].append(recall([dia.get(h.item.source_id, "") for h in hits], wanted, 10))
    overall = float(np.mean([v for vs in per.values() for v in vs]))
    return {"recall_at_10": round(overall, 4), "by_category": {CATEGORIES[c]: round(float(np.mean(v)), 4) for c, v in sorted(per.items())}}


def ablate(cached: list[Any], config: MemoryConfig) -> dict[str, Any]:
    """What each feature contributes: recall@10 with it switched off, everything else as configured."""
    return {name: score(cached, config.model_copy(update=change)) for name, change in {"as configured": {}, **ABLATIONS}.items()}


def grid(cached: list[Any]) -> list[dict[str, Any]]:
    """recall@10 overall and worst margin over BM25 per category, for a sweep of weights."""
    results = []
    for alpha, w_rec, w_imp in itertools.product((0.3, 0.4, 0.5, 0.6, 0.7, 0.8), (0.0, 0.05, 0.1), (0.0, 0.05, 0.1)):
        config = MemoryConfig(hybrid_alpha=alpha, w_recency=w_rec, w_importance=w_imp)
        results.append({"alpha": alpha, "w_recency": w_rec, "w_importance": w_imp, **score(cached, config)})
    return sorted(results, key=lambda r: -r["recall_at_10"])[:15]


if __name__ == "__main__":
    main()
