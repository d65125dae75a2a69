"""Emotion measured: the appraisal against people's ratings, its cost, and the mood's dynamics.

- EmoBank's test split (1,000 sentences, never tuned on): Pearson r of the learned head (on the MiniLM
  vectors memory computes and the sentence's words, each sentence read with the one before it in its document
  as the module reads a message with those before it in its channel) and of VADER (the fallback), V/A/D.
  `emobank_r_*` are against emobank.csv's ratings (readers' and writers' weighted together): the scale of issue
  29's own figures, which this bench reproduces there (VADER 0.46 / 0.24 / 0.16, a linear MiniLM ridge 0.63 /
  0.43 / 0.35); goals >= 0.65 / 0.45 / 0.35. `emobank_reader_r_*` are against the readers' ratings alone.
  Beside them: `_alone` (no context), `_linear` (the ridge on the vector alone, what recall uses) and
  `_spoken` (the vector of "ada: TEXT", as memory embeds a message).
- appraise_ms_p50: what appraising one message adds beyond the embedding memory computes anyway
  (context mixing and the head), goal < 2 ms.
- Dynamics, through a kernel (DuckDB, memory embedding every message, the emotion module): two persona
  agents, one high and one low in neuroticism, hear praise x5, insults x5 (a minute apart), then an hour
  of silence. The mood's pleasure must follow the events for both; the neurotic one must move further and
  recover more slowly; the recovery half-life measured from `emotion show --at` must be within 10 % of
  what the personality's parameters say.

    .venv/bin/python bench/emotion.py [--mirror PATH] [--quick] [--cache FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from tobio.emotion.appraise import LearnedAppraiser, LexiconAppraiser
from tobio.emotion.head import shipped
from tobio.emotion.train import in_context, load_corpus, pearson

if TYPE_CHECKING:
    from tobio.kernel import Kernel

MIRROR = Path("/work/.mirror/JULIELab+EmoBank/repo")
SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "emobank_sample.csv"  # 200 test sentences, with context
PRAISE = ["You did a wonderful job, thank you so much!", "I really admire how kind and clever you are.",
          "That was brilliant, you made my day!", "You are a delight to talk to.", "Thank you, that helped me enormously."]
INSULT = ["You are useless and I hate you!", "This is awful, you stupid machine.", "Shut up. Terrible answer!",
          "I despise talking to you.", "Worst. Conversation. Ever. You ruin everything!"]
GOOD_DAYS = ["I passed my driving test on the first try.", "My sister had a healthy baby girl last week.",
             "We won the regional chess final together.", "The garden is finally blooming and it smells wonderful.",
             "I got the job I wanted so much.", "Our team finished the marathon, all of us together.",
             "The doctor said my mother is completely healthy again.", "We found a lovely flat by the sea."]
BAD_DAYS = ["My grandfather died in the hospital last week.", "I crashed the car and broke my arm.",
            "They fired me without a word of warning.", "The flood ruined everything in our basement.",
            "My best friend stopped speaking to me.", "Our dog was hit by a truck on Sunday.",
            "The bank took the house and we had to move out.", "I failed the exam I studied a year for."]
ASKED = ["Tell me about your week.", "What's new with you?", "What happened lately?", "How have things been?"]  # neutral
T0 = datetime(2026, 1, 1, 12, 0, 0)
GOALS = (0.65, 0.45, 0.35)  # issue 29's, for V, A, D


def emobank(source: Path, quick: bool, cache: Path | None) -> dict[str, Any]:
    """Correlations on the test split (with --quick, its first 200 sentences from the sample in tests/data):
    the shipped head, its parts, the vectors memory really stores ("name: text"), and VADER."""
    from tobio.emotion.train import embed

    corpus = load_corpus(source)
    test = corpus.where("test")
    previous = corpus.previous()
    texts = [corpus.texts[i] for i in test]
    wanted = sorted({int(i) for i in test} | {previous[i] for i in test if previous[i] >= 0})
    vectors = np.zeros((len(corpus.texts), 384))
    vectors[wanted] = embed([corpus.texts[i] for i in wanted], cache)
    spoken = np.asarray(embed([f"ada: {t}" for t in texts], None), dtype=np.float64)  # memory's text (memory/text.py)
    head = shipped()
    mixed = in_context(vectors, previous, head.context_weight)[test]
    variants = {"": head.ratings(mixed, texts), "_alone": head.ratings(vectors[test], texts),
                "_linear": head.linear(vectors[test]), "_spoken": head.ratings(spoken, texts)}
    lexicon = LexiconAppraiser()
    vader = np.array([[getattr(lexicon.score(corpus.texts[i], "incoming"), k) for k in ("pleasure", "arousal", "dominance")]
                      for i in test])
    # The scale issue 29's figures were measured on: on emobank.csv's ratings (readers' and writers' weighted
    # together) VADER scores exactly its 0.46 / 0.24 / 0.16, and a linear MiniLM ridge its 0.63 / 0.43 / 0.35.
    # So the goals are read there; the readers' ratings alone are reported beside them (`emobank_reader_r_*`).
    scales = {"": corpus.combined[test] if corpus.combined is not None else corpus.ratings[test],
              "reader_": corpus.ratings[test]}
    out: dict[str, Any] = {"emobank_sentences": len(test), "context_weight": head.context_weight,
                           "head_target": head.meta.get("target", "reader"),
                           "emobank_scale": "emobank.csv (readers and writers)" if corpus.combined is not None else "readers"}
    for scale, gold in scales.items():
        for k, name in enumerate("vad"):
            for suffix, predicted in variants.items():
                out[f"emobank_{scale}r_{name}{suffix}"] = round(pearson(predicted[:, k], gold[:, k]), 4)
            out[f"vader_{scale}r_{name}"] = round(pearson(vader[:, k], gold[:, k]), 4)
        out[f"emobank_{scale}goals_met"] = all(out[f"emobank_{scale}r_{n}"] >= goal for n, goal in zip("vad", GOALS))
    # The added cost per message: context mixing, the words' features and the head on a vector memory already has.
    appraiser = LearnedAppraiser(head)
    times = []
    for j, i in enumerate(list(test) * (1 if quick else 3)):
        began = time.perf_counter()
        appraiser.score(appraiser.read("c", vectors[i].tolist(), T0 + timedelta(seconds=j), corpus.texts[i]), "incoming")
        times.append((time.perf_counter() - began) * 1000)
    out["appraise_ms_p50"] = round(statistics.median(times), 4)
    out["appraise_ms_p95"] = round(sorted(times)[int(0.95 * len(times))], 4)
    return out


def listening_kernel(work: Path) -> Kernel:
    """A kernel with memory and emotion (a scripted chat model) whose agents hear everything and answer
    nothing: only what is said to them moves them."""
    from tobio.config.schema import KernelConfig
    from tobio.hooks import SHOULD_ANSWER
    from tobio.kernel import Kernel

    async def listen_only(_agent: Any, _delivery: Any) -> bool:
        return False

    config = KernelConfig(
        modules=["scripted", "models", "persona", "memory", "emotion"],
        providers={"s": {"type": "scripted", "replies": ["I see."]}},
        models={"chat-default": {"provider": "s", "model": "x", "purpose": "chat"}})
    kernel = Kernel(config, database=f"duckdb:///{work / 'bench.duckdb'}").start()
    kernel.hooks.add(SHOULD_ANSWER, listen_only)
    return kernel


def dynamics() -> dict[str, Any]:
    """The scripted sequence through a real kernel, for a neurotic and a stable persona."""
    from tobio.memory.service import Memory

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kernel = listening_kernel(work)
        try:
            people = {"nervy": 0.9, "steady": 0.1}
            for name, neuroticism in people.items():
                (work / f"{name}-p.yaml").write_text(json.dumps({"name": name.title(), "description": "A person.",
                                                                  "big_five": {"neuroticism": neuroticism}}))
                (work / f"{name}.yaml").write_text(json.dumps({"name": name, "type": "persona", "persona": str(work / f"{name}-p.yaml"),
                                                               "channels": ["room"]}))
                kernel.run(f"agent spawn {work / f'{name}.yaml'}")
            script = [*PRAISE, *INSULT]
            ada = kernel.call(kernel.agents.ensure_user("ada", ("room",)))
            after_praise, after_insult = T0 + timedelta(minutes=len(PRAISE) - 1), T0 + timedelta(minutes=len(script) - 1)
            praised: dict[str, dict[str, Any]] = {}
            for i, text in enumerate(script):
                kernel.post_sync("room", text, sender=ada, created_at=T0 + timedelta(minutes=i))
                if i == len(PRAISE) - 1:  # `emotion show --at` decays forward from the latest state: read it now
                    kernel.call(Memory.of(kernel).settle())
                    for name in people:
                        praised[name] = kernel.run(f"emotion show {name} --at {after_praise.isoformat()}").data
            kernel.call(Memory.of(kernel).settle())
            out: dict[str, Any] = {}
            for name in people:
                def at(when: datetime, name: str = name) -> dict[str, Any]:
                    data: dict[str, Any] = kernel.run(f"emotion show {name} --at {when.isoformat()}").data
                    return data

                insulted, calm = at(after_insult), at(after_insult + timedelta(hours=1))
                base = insulted["baseline"]["pleasure"]
                half_life = float(insulted["half_life_s"])
                probe = after_insult + timedelta(seconds=half_life)
                left = (at(probe)["affect"]["pleasure"] - base) / (insulted["affect"]["pleasure"] - base)
                measured = half_life * math.log(0.5) / math.log(left) if 0 < left < 1 else float("nan")
                felt = insulted["emotions"][0] if insulted["emotions"] else {}
                out[name] = {"neuroticism": people[name], "baseline_pleasure": round(base, 3),
                             "after_praise": round(praised[name]["affect"]["pleasure"], 3),
                             "after_insults": round(insulted["affect"]["pleasure"], 3),
                             "after_silence_1h": round(calm["affect"]["pleasure"], 3),
                             "half_life_s": round(half_life, 1), "half_life_measured_s": round(measured, 1),
                             "emotion_after_insults": f"{felt.get('name')} ({felt.get('cause')})" if felt else None}
            nervy, steady = out["nervy"], out["steady"]
            out["sign_follows_events"] = all(p["after_praise"] > 0 > p["after_insults"] for p in (nervy, steady))
            out["neurotic_moves_further"] = (abs(nervy["after_insults"] - nervy["after_praise"])
                                             > abs(steady["after_insults"] - steady["after_praise"]))
            out["neurotic_recovers_slower"] = nervy["half_life_measured_s"] > steady["half_life_measured_s"]
            out["half_life_within_10pct"] = all(abs(p["half_life_measured_s"] / p["half_life_s"] - 1) <= 0.1 for p in (nervy, steady))
            appraised = kernel.modules.loaded["emotion"].appraised  # type: ignore[attr-defined]
            out["appraised_by"] = dict(appraised)
            return out
        finally:
            kernel.close()


def congruent_recall(weight: float | None = None) -> dict[str, Any]:
    """Mood-congruent recall, measured: an agent hears eight good and eight bad pieces of news (alternating, so
    recency favours neither), its mood is set to sad and then to glad, and `memory search` asks four neutral
    questions. With the effect on, more of the top eight should match the mood than with it off
    (`recall_congruence` 0); the share is averaged over both moods."""
    from tobio.db.migrations import utcnow

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kernel = listening_kernel(work)
        try:
            (work / "mo-p.yaml").write_text(json.dumps({"name": "Mo", "description": "A person."}))
            (work / "mo.yaml").write_text(json.dumps({"name": "mo", "type": "persona", "persona": str(work / "mo-p.yaml"),
                                                      "channels": ["hall"]}))
            kernel.run(f"agent spawn {work / 'mo.yaml'}")
            ada = kernel.call(kernel.agents.ensure_user("ada", ("hall",)))
            news = [text for pair in zip(GOOD_DAYS, BAD_DAYS) for text in pair]
            start = utcnow() - timedelta(minutes=len(news))
            for i, text in enumerate(news):
                kernel.post_sync("hall", text, sender=ada, created_at=start + timedelta(minutes=i))
            emotion = kernel.modules.loaded["emotion"]
            shares: dict[str, list[float]] = {"on": [], "off": []}
            default = emotion.settings.recall_congruence if weight is None else weight
            for effect, used in (("on", default), ("off", 0.0)):
                emotion.settings = emotion.settings.model_copy(update={"recall_congruence": used})
                for pleasure, matching in ((-0.8, BAD_DAYS), (0.8, GOOD_DAYS)):
                    kernel.run(f"emotion set mo --pleasure {pleasure} --arousal 0 --dominance 0")
                    for asked in ASKED:
                        top = kernel.run(f"memory search mo {json.dumps(asked)} -k 8").data
                        shares[effect].append(sum(1 for hit in top if any(m in hit["content"] for m in matching)) / len(top))
            return {"congruent_top8_share_on": round(statistics.mean(shares["on"]), 3),
                    "congruent_top8_share_off": round(statistics.mean(shares["off"]), 3),
                    "recall_congruence": default}
        finally:
            kernel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=MIRROR, help="EmoBank's repository (git directory or checkout)")
    parser.add_argument("--quick", action="store_true", help="the 200 test sentences in tests/data, no mirror (the smoke test)")
    parser.add_argument("--cache", type=Path, default=None, help="embeddings cache (.npz)")
    args = parser.parse_args()
    result = emobank(SAMPLE if args.quick else args.mirror, args.quick, args.cache)
    result["dynamics"] = dynamics()
    result["congruent_recall"] = congruent_recall()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
