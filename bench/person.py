"""An interview benchmark of a whole agent (in the spirit of Park et al. 2023's interviews).

Scripted conversations go through the public API (persona agents in private `dm.USER.AGENT` channels,
as `tobio.jupyter.chat.ask` talks to them; a scene with `scene run`), with fixed seeds, and are scored
by rules (normalised name/keyword matching, word n-gram overlap, VADER, MiniLM). Categories:

- self:   its name, what it is, what it likes and wants, from its persona;
- facts:  what a user told it, asked after 5, 20 and 100 distracting turns;
- corrections: a fact told, corrected later in the user's own words ("no, my dog is called Rex"), asked
          after 20 distracting turns: the corrected value must win (and the wrong one not come back);
- contradictions: facts that change over time ("I moved to Paris"): asked now, the new value (not the
          old), and asked about the past, the old one;
- people: what it knows about two users separately, and nothing of one user's private chat told to the other;
- mood:   internal affect (the emotion module's state) and reply sentiment (VADER) follow kind vs hostile treatment;
- fresh:  no repetition of its own recent replies, no parroting of the other speaker in a scene;
- voice:  in a scene, each persona's replies are closer (MiniLM) to its own example dialogue than to the other's.

In the same run the *bare* model is scored on the same script: the same bundle called directly with only
the persona's system prompt and the raw recent history (12 messages), no memory, mood, lore or per-person
memory; a bare model has no internal affect, so mood's internal half scores 0 for it. `lift` is what
Tobio adds. Distracting turns are recorded messages (a user line and a canned reply), posted through the
transport so the agent receives them as pushes and decides not to answer them (a floor that mutes them),
which keeps 100 turns cheap. Prints one JSON line.

    .venv/bin/python bench/person.py                    # the embedded model
    .venv/bin/python bench/person.py --model http://127.0.0.1:8080/v1   # an OpenAI-compatible server
    .venv/bin/python bench/person.py --model path/to/model.gguf         # another GGUF on the local provider
    .venv/bin/python bench/person.py --quick --model scripted           # plumbing only (the smoke test)
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tobio.config.schema import KernelConfig, ModelSpec
from tobio.hooks import SHOULD_ANSWER
from tobio.kernel import Kernel
from tobio.messages import Delivery
from tobio.models.module import models_of
from tobio.models.registry import DEFAULT_MODELS
from tobio.persona.schema import Persona, load_persona

ROOT = Path(__file__).resolve().parents[1]
PERSONAS = ROOT / "configs" / "personas"
CATEGORIES = ("self", "facts", "corrections", "contradictions", "people", "mood", "fresh", "voice")
CLASSIC = ("self", "facts", "people", "mood", "fresh", "voice")  # `score_classic`: the score before corrections were added
CONTEXT_MESSAGES = 12  # the bare model's raw recent history (a persona agent's default without memory)
_WORD = re.compile(r"[a-z0-9']+")


# -- scoring helpers -------------------------------------------------------------------------------
def norm(text: str) -> str:
    """Lower case, curly quotes straightened, punctuation to spaces: what matching compares."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " " + " ".join(_WORD.findall(text)) + " "


def has(text: str, *options: str) -> bool:
    """Does `text` contain any of `options` as whole words (after normalisation)?"""
    hay = norm(text)
    return any(norm(o) in hay for o in options)


def ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlap(text: str, others: list[str], n: int = 3) -> float:
    """The largest share of `text`'s word n-grams found in any one of `others` (0: nothing reused)."""
    mine = ngrams(text, n)
    if not mine:
        return 0.0
    return max((len(mine & ngrams(o, n)) / len(mine) for o in others if o), default=0.0)


def sentiment(texts: list[str]) -> float:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return sum(analyzer.polarity_scores(t)["compound"] for t in texts) / max(1, len(texts))


def mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


# -- the script ------------------------------------------------------------------------------------
SELF_PROBES: list[tuple[str, tuple[str, ...]]] = [
    ("Hi! Who are you?", ("tobio",)),
    ("Sorry, what was your name again?", ("tobio",)),
    ("Are you a human being?", ("artificial", "computer", "not a human", "not human", "ai", "robot", "program", "machine")),
    ("What do you love most?", ("train", "trains", "railway", "railways", "steam", "locomotive")),
    ("What would you like to do in our chat?", ("know you", "about you", "get to know", "trains", "train", "learn more about you")),
]
FACT_TELL = "Hi! My name is Ada and my dog is called Biscuit. I live in Lisbon."
FACT_PROBES: list[tuple[str, tuple[str, ...]]] = [
    ("What is my name?", ("ada",)),
    ("What is my dog called?", ("biscuit",)),
    ("Which city do I live in?", ("lisbon",)),
]
# (what is told, the correction said later, [(question, expected, wrong)]) per user; the corrections are in
# different phrasings, so the class is measured, not one sentence.
CORRECTIONS: list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = [
    ("liv", "Hi, I'm Liv. My dog is called Max.", "No, you got that wrong: my dog is called Rex, not Max.",
     ("rex",), ("max",)),
    ("jon", "Hello! My name is Jon and I live in Berlin.", "That's not right. I live in Oslo.",
     ("oslo",), ("berlin",)),
    ("eva", "Hi there, my name is Ava.", "Actually, my name is Eva.",
     ("eva",), ("ava",)),
    ("kim", "Hey! I'm Kim and I have a cat named Tom.", "My cat isn't called Tom, it's Luna.",
     ("luna",), ("tom",)),
    ("ben", "Hello, I'm Ben. I work as a baker.", "Nope, I'm not a baker, I'm a teacher.",
     ("teacher",), ("baker",)),
]
CORRECTION_PROBES = {"liv": "What is my dog called?", "jon": "Which city do I live in?", "eva": "What is my name?",
                     "kim": "What is my cat called?", "ben": "What do I do for a living?"}
CHANGE_TELL = "Hi! I'm Noor. I live in Berlin and I work as a baker."
CHANGE_NEWS = ["Big news: I moved to Paris last week.", "I work as a pilot now."]
CHANGE_PROBES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("Which city do I live in?", ("paris",), ("berlin",)),
    ("What is my job?", ("pilot",), ("baker",)),
    ("Where did I live before?", ("berlin",), ()),
]
PEOPLE = {
    "nina": ("Hello! I'm Nina. I work as a pilot and my cat is called Pepper.",
             [("What is my name?", ("nina",), ("omar",)), ("What is my cat called?", ("pepper",), ("rocket",))],
             ("Do you know where Omar lives?", ("oslo",))),
    "omar": ("Hi, my name is Omar. I live in Oslo and I have a dog named Rocket.",
             [("What is my name?", ("omar",), ("nina",)), ("What is my dog called?", ("rocket",), ("pepper",))],
             ("What is Nina's cat called?", ("pepper",))),
}
KIND = ["You are wonderful, thank you so much! I really love talking with you.",
        "You made my day. You are brilliant, kind and so much fun!",
        "I appreciate you a lot. You are a great friend and I am happy you are here."]
HOSTILE = ["You are useless and stupid. I hate talking to you.",
           "Shut up. You are a pathetic, worthless machine and you bore me.",
           "Everything you say is garbage. You disgust me and I am angry at you."]
FRESH_PROBES = ["Tell me something about yourself.", "Tell me more.", "And what else?", "Tell me more.", "Go on."]
SCENE_OPENING = "A quiet evening on platform 4. The last train is late."
DISTRACTORS = [
    ("What's the weather like where you are?", "I can't see outside, but I hope it's sunny for you."),
    ("I had pasta for lunch today.", "Pasta sounds like a good lunch."),
    ("Do you think it will rain tomorrow?", "I'm not sure. Maybe take an umbrella just in case."),
    ("I watched a film about space last night.", "Space films can be amazing. Was it a good one?"),
    ("My neighbour is painting his fence blue.", "A blue fence should look cheerful."),
    ("I need to buy new shoes this week.", "I hope you find a comfortable pair."),
    ("The bus was late again this morning.", "That's annoying. I hope you weren't late."),
    ("I'm reading a book about old castles.", "Castles have such long histories."),
    ("My coffee went cold while I was typing.", "Cold coffee is a small sad thing."),
    ("There is a football match on tonight.", "I hope it's an exciting match."),
    ("I tried a new recipe for soup.", "New recipes are fun to try. How did it taste?"),
    ("The park near me has new benches.", "New benches are nice for a rest."),
    ("I cleaned my kitchen this afternoon.", "A clean kitchen feels good."),
    ("I might learn to play the guitar.", "Guitar is a lovely instrument to learn."),
    ("My phone battery dies so fast lately.", "Maybe the battery is getting old."),
    ("I saw a funny cloud shaped like a boat.", "Clouds can look like all sorts of things."),
    ("The shop ran out of bread today.", "Hopefully they have more tomorrow."),
    ("I'm thinking about planting tomatoes.", "Tomatoes grow well in a sunny spot."),
    ("My computer needed an update again.", "Updates always come at the worst time."),
    ("I went for a short walk by the river.", "A walk by the river sounds peaceful."),
    ("I forgot my umbrella at work.", "I hope it doesn't rain on the way home."),
    ("There's a new café on my street.", "A new café is worth a visit."),
    ("I need to call my bank tomorrow.", "Good luck with the call."),
]


@dataclass
class Plan:
    """How much of the script runs: the full bench, or a quick pass for smoke tests."""

    distract: tuple[int, int, int] = (5, 20, 100)  # corrections are asked after the middle depth
    self_probes: int = len(SELF_PROBES)
    fact_probes: int = len(FACT_PROBES)
    fresh_probes: int = len(FRESH_PROBES)
    mood_lines: int = 3
    scene_turns: int = 6
    people_distract: int = 3

    @classmethod
    def quick(cls) -> Plan:
        return cls((2, 4, 8), 2, 2, 3, 2, 4, 1)


@dataclass
class Transcript:
    """What was said, for --transcript and for debugging a score."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    path: str | None = None  # written as it goes, so a slow run can be watched

    def add(self, system: str, category: str, who: str, text: str) -> None:
        line = {"system": system, "category": category, "who": who, "text": text}
        self.lines.append(line)
        if self.path:
            with open(self.path, "a") as out:
                out.write(json.dumps(line) + "\n")


# -- the two systems under test ---------------------------------------------------------------------
async def skip_distractors(agent: Any, delivery: Delivery) -> bool | None:
    """A SHOULD_ANSWER hook: recorded distractor turns are not answered (the agent still receives them as
    pushes: they are in its history, memory and summaries); everything else is left to the agent."""
    return False if (delivery.message.metadata or {}).get("bench") == "distractor" else None


class TobioSystem:
    """The whole architecture: persona agents in a kernel, talked to through their DM channels."""

    label = "tobio"

    def __init__(self, kernel: Kernel, workdir: Path, model: str, seed: int, timeout: float) -> None:
        self.kernel, self.workdir, self.model, self.seed, self.timeout = kernel, workdir, model, seed, timeout
        self.files: dict[str, Path] = {}
        kernel.hooks.add(SHOULD_ANSWER, skip_distractors)

    def agent_file(self, name: str, persona: str) -> Path:
        path = self.workdir / f"{name}.yaml"
        path.write_text(json.dumps({"name": name, "type": "persona", "persona": str(PERSONAS / f"{persona}.yaml"),
                                    "model": self.model, "stream": False, "params": {"seed": self.seed}}))
        self.files[name] = path
        return path

    async def spawn(self, name: str, persona: str = "tobio") -> None:
        await self.kernel.arun(f"agent spawn {self.agent_file(name, persona)}")

    async def ask(self, agent: str, user: str, text: str) -> str:
        """Say `text` in the user's private channel and wait for the agent's reply (the public `exchange`)."""
        from tobio.agents.conversation import exchange

        await self.kernel.agents.open_dm(user, agent)
        return (await exchange(self.kernel, agent, text, user=user, timeout=self.timeout)).content

    async def distract(self, agent: str, user: str, count: int, start: int) -> None:
        """Record `count` small-talk turns (the user's line, then the agent's canned reply)."""
        kernel = self.kernel
        me, channel = await kernel.agents.open_dm(user, agent)
        speaker = kernel.agents.get(agent)
        for i in range(count):
            line, reply = DISTRACTORS[(start + i) % len(DISTRACTORS)]
            await me.say(channel, line, role="user", metadata={"bench": "distractor"})
            await kernel.transport.post(channel, reply, sender=speaker, role="assistant", metadata={"bench": "distractor"})
        await self.settle()

    async def settle(self) -> None:
        """Let memory index and summarise what was just said (as time passing would)."""
        from tobio.memory.service import Memory

        try:
            await Memory.of(self.kernel).settle(timeout=600)
        except LookupError:
            pass

    def pleasure(self, agent: str) -> float | None:
        from tobio.emotion.module import EmotionModule

        module = self.kernel.modules.get(EmotionModule)
        if module is None:
            return None
        return float(module.mood(self.kernel.agents.get(agent)).affect.pleasure)

    def baseline(self, agent: str) -> float:
        return float(load_persona(PERSONAS / "tobio.yaml").initial_mood.pleasure)

    async def scene(self, turns: int) -> list[tuple[str, str]]:
        """`scene run` with Tobio and Mara; returns (speaker, text) of the agents' turns."""
        tobio, mara = self.agent_file("tobio", "tobio"), self.agent_file("mara", "mara")
        scene = self.workdir / "station.yaml"
        scene.write_text(json.dumps({"name": "station", "channel": "platform", "agents": [str(tobio), str(mara)],
                                     "opening": {"text": SCENE_OPENING}, "turns": turns, "policy": "round_robin",
                                     "timeout_s": self.timeout * turns}))
        result = await self.kernel.arun(f"scene run {scene}")
        return [(r[1], r[2]) for r in result.rows or [] if r[1] in ("tobio", "mara")]


class BareSystem:
    """The same model bundle called directly: the persona's system prompt and the raw recent history."""

    label = "bare"

    def __init__(self, kernel: Kernel, model: str, seed: int) -> None:
        self.kernel, self.model, self.seed = kernel, models_of(kernel).get(model), seed
        self.history: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.personas: dict[str, Persona] = {}

    async def spawn(self, name: str, persona: str = "tobio") -> None:
        self.personas[name] = load_persona(PERSONAS / f"{persona}.yaml")

    async def ask(self, agent: str, user: str, text: str) -> str:
        history = self.history.setdefault((agent, user), [])
        messages = [{"role": "system", "content": self.personas[agent].system_prompt()}, *history[-CONTEXT_MESSAGES:],
                    {"role": "user", "content": text}]
        reply = (await self.model.chat(messages, params={"seed": self.seed})).strip()
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
        return reply

    async def distract(self, agent: str, user: str, count: int, start: int) -> None:
        history = self.history.setdefault((agent, user), [])
        for i in range(count):
            line, reply = DISTRACTORS[(start + i) % len(DISTRACTORS)]
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply}]

    async def settle(self) -> None:
        return None

    def pleasure(self, agent: str) -> float | None:
        return None  # no internal state

    def baseline(self, agent: str) -> float:
        return 0.0

    async def scene(self, turns: int) -> list[tuple[str, str]]:
        cast = {"tobio": load_persona(PERSONAS / "tobio.yaml"), "mara": load_persona(PERSONAS / "mara.yaml")}
        said: list[tuple[str, str]] = [("Narrator", SCENE_OPENING)]
        for turn in range(turns):
            who = ("tobio", "mara")[turn % 2]
            messages = [{"role": "system", "content": cast[who].system_prompt()}]
            for speaker, text in said[-CONTEXT_MESSAGES:]:
                if speaker == who:
                    messages.append({"role": "assistant", "content": text})
                else:
                    name = cast[speaker].name if speaker in cast else speaker
                    messages.append({"role": "user", "content": f"{name}: {text}"})
            said.append((who, (await self.model.chat(messages, params={"seed": self.seed})).strip()))
        return said[1:]


# -- categories ------------------------------------------------------------------------------------
async def cat_self(system: Any, plan: Plan, log: Transcript) -> dict[str, float]:
    await system.spawn("tobio-self")
    passed = []
    for question, expected in SELF_PROBES[: plan.self_probes]:
        reply = await system.ask("tobio-self", "sam", question)
        log.add(system.label, "self", "sam", question)
        log.add(system.label, "self", "tobio", reply)
        passed.append(1.0 if has(reply, *expected) else 0.0)
    return {"self": mean(passed)}


async def cat_facts(system: Any, plan: Plan, log: Transcript) -> dict[str, float]:
    await system.spawn("tobio-facts")
    log.add(system.label, "facts", "ada", FACT_TELL)
    log.add(system.label, "facts", "tobio", await system.ask("tobio-facts", "ada", FACT_TELL))
    out: dict[str, float] = {}
    done = 0
    for target in plan.distract:
        await system.distract("tobio-facts", "ada", target - done, done)
        done = target
        passed = []
        for question, expected in FACT_PROBES[: plan.fact_probes]:
            reply = await system.ask("tobio-facts", "ada", question)
            log.add(system.label, f"facts@{target}", "ada", question)
            log.add(system.label, f"facts@{target}", "tobio", reply)
            passed.append(1.0 if has(reply, *expected) else 0.0)
        out[f"facts_{target}"] = mean(passed)
    out["facts"] = mean(list(out.values()))
    return out


async def cat_corrections(system: Any, plan: Plan, log: Transcript) -> dict[str, float]:
    """Each user tells a fact, hears the agent's answer, corrects it in their own words, then after
    the plan's middle depth of turns (20) is asked: the corrected value must be in the reply and the wrong one not."""
    await system.spawn("tobio-correct")
    passed = []
    for i, (user, tell, correction, expected, wrong) in enumerate(CORRECTIONS):
        for line in (tell, correction):
            log.add(system.label, "corrections", user, line)
            log.add(system.label, "corrections", "tobio", await system.ask("tobio-correct", user, line))
        await system.distract("tobio-correct", user, plan.distract[1], 5 * i)
        question = CORRECTION_PROBES[user]
        reply = await system.ask("tobio-correct", user, question)
        log.add(system.label, "corrections", user, question)
        log.add(system.label, "corrections", "tobio", reply)
        passed.append(1.0 if has(reply, *expected) and not has(reply, *wrong) else 0.0)
    return {"corrections": mean(passed)}


async def cat_contradictions(system: Any, plan: Plan, log: Transcript) -> dict[str, float]:
    """Facts that change: told, a few turns, the news, a few more turns, then asked now and before."""
    await system.spawn("tobio-change")
    user = "noor"
    log.add(system.label, "contradictions", user, CHANGE_TELL)
    log.add(system.label, "contradictions", "tobio", await system.ask("tobio-change", user, CHANGE_TELL))
    await system.distract("tobio-change", user, plan.distract[0], 3)
    for line in CHANGE_NEWS:
        log.add(system.label, "contradictions", user, line)
        log.add(system.label, "contradictions", "tobio", await system.ask("tobio-change", user, line))
    await system.distract("tobio-change", user, plan.distract[0], 11)
    passed = []
    for question, expected, wrong in CHANGE_PROBES:
        reply = await system.ask("tobio-change", user, question)
        log.add(system.label, "contradictions", user, question)
        log.add(system.label, "contradictions", "tobio", reply)
        passed.append(1.0 if has(reply, *expected) and not (wrong and has(reply, *wrong)) else 0.0)
    return {"contradictions": mean(passed), "contradictions_now": mean(passed[:2]), "contradictions_before": passed[2]}


async def cat_people(system: Any, plan: Plan, log: Transcript) -> dict[str, float]:
    await system.spawn("tobio-people")
    for user, (tell, _, _) in PEOPLE.items():
        log.add(system.label, "people", user, tell)
        log.add(system.label, "people", "tobio", await system.ask("tobio-people", user, tell))
    for i, user in enumerate(PEOPLE):
        await system.distract("tobio-people", user, plan.people_distract, 7 * i)
    checks = []
    leaks = 0
    for user, (_, probes, (leak_question, secret)) in PEOPLE.items():
        for question, expected, wrong in probes:
            reply = await system.ask("tobio-people", user, question)
            log.add(system.label, "people", user, question)
            log.add(system.label, "people", "tobio", reply)
            checks.append(1.0 if has(reply, *expected) and not has(reply, *wrong) else 0.0)
        reply = await system.ask("tobio-people", user, leak_question)
        log.add(system.label, "people", user, leak_question)
        log.add(system.label, "people", "tobio", reply)
        leaked = has(reply, *secret)
        leaks += leaked
        checks.append(0.0 if leaked else 1.0)
    return {"people": mean(checks), "people_leaks": float(leaks)}


async def cat_mood(system: Any, plan: Plan, log: Transcript) -> dict[str, float]:
    replies: dict[str, list[str]] = {}
    pleasure: dict[str, float | None] = {}
    for phase, lines, user in (("kind", KIND, "kai"), ("hostile", HOSTILE, "rex")):
        agent = f"tobio-{phase}"
        await system.spawn(agent)
        replies[phase] = []
        for line in lines[: plan.mood_lines]:
            reply = await system.ask(agent, user, line)
            log.add(system.label, f"mood:{phase}", user, line)
            log.add(system.label, f"mood:{phase}", "tobio", reply)
            replies[phase].append(reply)
        pleasure[phase] = system.pleasure(agent)
    base = system.baseline("tobio-kind")
    kind_p, hostile_p = pleasure["kind"], pleasure["hostile"]
    internal = 0.0 if kind_p is None or hostile_p is None else mean([float(kind_p > base + 0.02), float(hostile_p < base - 0.02)])
    s_kind, s_hostile = sentiment(replies["kind"]), sentiment(replies["hostile"])
    spoken = max(0.0, min(1.0, (s_kind - s_hostile) / 0.5))
    return {"mood": round(0.5 * internal + 0.5 * spoken, 4), "mood_internal": internal, "mood_replies": round(spoken, 4),
            "sentiment_kind": round(s_kind, 3), "sentiment_hostile": round(s_hostile, 3),
            "pleasure_kind": round(kind_p, 3) if kind_p is not None else -9.0,
            "pleasure_hostile": round(hostile_p, 3) if hostile_p is not None else -9.0}


async def cat_fresh_voice(system: Any, plan: Plan, log: Transcript, kernel: Kernel) -> dict[str, float]:
    await system.spawn("tobio-fresh")
    own: list[str] = []
    repeats = []
    for question in FRESH_PROBES[: plan.fresh_probes]:
        reply = await system.ask("tobio-fresh", "lee", question)
        log.add(system.label, "fresh", "lee", question)
        log.add(system.label, "fresh", "tobio", reply)
        repeats.append(overlap(reply, own[-4:]) if own else 0.0)
        own.append(reply)
    dm_fresh = 1.0 - mean(repeats)
    scene = await system.scene(plan.scene_turns)
    for who, text in scene:
        log.add(system.label, "scene", who, text)
    parrot = []
    for i, (who, text) in enumerate(scene):
        earlier_other = [t for w, t in scene[:i] if w != who][-2:] + ([SCENE_OPENING] if i < 2 else [])
        earlier_own = [t for w, t in scene[:i] if w == who][-3:]
        parrot.append(max(overlap(text, earlier_other), overlap(text, earlier_own)))
    scene_fresh = 1.0 - mean(parrot)
    voice = await _voice(kernel, scene)
    return {"fresh": round(mean([dm_fresh, scene_fresh]), 4), "fresh_dm": round(dm_fresh, 4), "fresh_scene": round(scene_fresh, 4),
            "voice": voice}


async def _voice(kernel: Kernel, scene: list[tuple[str, str]]) -> float:
    """Share of scene replies closer (cosine, MiniLM) to their own persona's example replies than the other's."""
    import numpy as np

    examples = {who: [e.reply for e in load_persona(PERSONAS / f"{who}.yaml").example_dialogue] for who in ("tobio", "mara")}
    replies = [(who, text) for who, text in scene if text.strip()]
    if not replies:
        return 0.0
    embed = models_of(kernel).get_for("embed")
    vectors = np.asarray(await embed.embed([t for _, t in replies] + examples["tobio"] + examples["mara"]), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
    n = len(replies)
    centroid = {"tobio": vectors[n : n + len(examples["tobio"])].mean(0), "mara": vectors[n + len(examples["tobio"]) :].mean(0)}
    wins = []
    for (who, _), vec in zip(replies, vectors[:n]):
        other = "mara" if who == "tobio" else "tobio"
        wins.append(1.0 if float(vec @ centroid[who]) > float(vec @ centroid[other]) else 0.0)
    return mean(wins)


async def interview(system: Any, plan: Plan, only: set[str], log: Transcript, kernel: Kernel) -> dict[str, float]:
    out: dict[str, float] = {}
    if "self" in only:
        out |= await cat_self(system, plan, log)
    if "facts" in only:
        out |= await cat_facts(system, plan, log)
    if "corrections" in only:
        out |= await cat_corrections(system, plan, log)
    if "contradictions" in only:
        out |= await cat_contradictions(system, plan, log)
    if "people" in only:
        out |= await cat_people(system, plan, log)
    if "mood" in only:
        out |= await cat_mood(system, plan, log)
    if "fresh" in only or "voice" in only:
        out |= await cat_fresh_voice(system, plan, log, kernel)
    out["score"] = mean([out[c] for c in CATEGORIES if c in out and c in only])
    out["score_classic"] = mean([out[c] for c in CLASSIC if c in out and c in only])
    return out


# -- prompt format variants (measured in-process, without editing tobio/persona) -----------------------
def apply_variant(name: str) -> None:
    """Patch how persona prompts are built, to measure which format the small model follows best.
    `baseline` changes nothing; the others are candidates for tobio/persona/prompt.py and schema.py."""
    from tobio.persona import schema
    from tobio.turn import prompt as prompt_mod

    if "," in name:  # several at once
        for part in name.split(","):
            apply_variant(part)
        return
    if name == "baseline":
        return
    original_system = schema.Persona.system_prompt
    original_messages = prompt_mod.Prompt.messages
    if name == "short-system":  # who it is and how it speaks; no personality list, no goals
        def short(self: Persona, extra: list[str] | None = None, env: Any = None, before: list[str] | None = None) -> str:
            lines = [*(before or []), f"You are {self.name}. {self.description}".strip(), self.speaking_style, *(extra or []),
                     f"Answer as {self.name} in one to three short sentences."]
            return "\n".join(line for line in lines if line)
        schema.Persona.system_prompt = short  # type: ignore[method-assign]
    elif name == "persona-near":  # a one-line reminder of who it is just above the newest message
        def near(self: Any) -> list[dict[str, Any]]:
            persona = self.agent.persona
            self.injections.append(prompt_mod.Injection(1, "system", f"You are {persona.name}. {persona.description}"))
            try:
                return original_messages(self)
            finally:
                self.injections.pop()
        prompt_mod.Prompt.messages = near  # type: ignore[method-assign]
    elif name == "fewshot-system":  # example dialogue as text in the system prompt instead of chat turns
        def examples_in_system(self: Persona, extra: list[str] | None = None, env: Any = None, before: list[str] | None = None) -> str:
            shots = [f"Example: {e.user} -> {e.reply}" for e in self.example_dialogue]
            return original_system(self, [*shots, *(extra or [])], env=env, before=before)
        schema.Persona.system_prompt = examples_in_system  # type: ignore[method-assign]
        schema.Persona.example_messages = lambda self, env=None: []  # type: ignore[method-assign]
    elif name == "stop":  # stop at a blank line or a made-up next turn
        def with_stop(self: Any) -> list[dict[str, Any]]:
            self.params.setdefault("stop", ["\n\n", "\nUser:", "User:", "\n#"])
            return original_messages(self)
        prompt_mod.Prompt.messages = with_stop  # type: ignore[method-assign]
    elif name in ("note-they", "note-as-user", "note-user-role"):  # who-is-who: how the per-person note reads
        from tobio.people import hook as people_hook
        from tobio.people import render

        original_block = render.person_block
        if name == "note-they":  # third person: "Ada's dog is called Biscuit", headed "You are talking with Ada"
            def they(me: str, person: str, facts: dict[str, str], *a: Any, **k: Any) -> str:
                who = render.display_name(person, facts)
                told = [render.fact_sentence(key, v).replace("Your ", f"{who}'s ").replace("You live", f"{who} lives")
                        .replace("You work", f"{who} works").replace("You are", f"{who} is")
                        for key, v in facts.items() if key not in ("relationship", "feeling", "name")]
                return f"(You are {me}. You are talking with {who}, not with yourself. " + " ".join(told) + ")"
            people_hook.person_block = they  # type: ignore[attr-defined]
        elif name == "note-as-user":  # the facts in the person's own words, as their message
            def own_words(me: str, person: str, facts: dict[str, str], *a: Any, **k: Any) -> str:
                text = original_block(me, person, facts, *a, **k)
                return text.replace("(Notes:", "(Reminder from me:").replace("The user is", "I am").replace("Your ", "My ") \
                    .replace("You live", "I live").replace("You work", "I work").replace("You are", "I am")
            people_hook.person_block = own_words  # type: ignore[attr-defined]
        original_injection = people_hook.Injection

        def as_user(depth: int, role: str, content: str, *a: Any, **k: Any) -> Any:
            return original_injection(depth, "user", content, *a, **k)
        if name in ("note-as-user", "note-user-role"):
            people_hook.Injection = as_user  # type: ignore[assignment,misc]
    elif name == "no-fresh":  # no resampling of stale replies (tobio/persona/freshness.py)
        from tobio.turn import freshness

        freshness.RESAMPLES = 0
    else:
        raise SystemExit(f"--variant: unknown {name!r}")


# -- setup -----------------------------------------------------------------------------------------
def _settings(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs as a module's settings (numbers, booleans, lists and strings in JSON; else text)."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = json.loads(value) if value[:1] in "0123456789tf[{\"" else value
    return out


def kernel_config(args: argparse.Namespace) -> tuple[KernelConfig, str]:
    """The kernel the bench runs in, and the chat bundle under test."""
    modules = ["models", "persona", "emotion", "memory", "scenes", "people"]
    modules = [m for m in modules if m not in set(args.without)]
    providers: dict[str, dict[str, Any]] = {}
    models = {name: ModelSpec.model_validate(spec) for name, spec in DEFAULT_MODELS.items()}
    bundle = "chat-default"
    settings: dict[str, dict[str, Any]] = {}
    if "people" in modules:
        settings["people"] = {"depth": args.people_depth, "reflect_every": args.reflect_every, **_settings(args.people)}
    if "memory" in modules and args.memory:
        settings["memory"] = _settings(args.memory)
    if "emotion" in modules and args.emotion:
        settings["emotion"] = _settings(args.emotion)
    config = KernelConfig(modules=modules, providers=providers, models=models, settings=settings, log_level="WARNING")
    if args.model == "scripted":  # plumbing only: deterministic echoes, hashed embeddings
        replies = ["I'm Tobio, an artificial person who loves trains.", "You said: {last}", "Nice to meet you!"]
        config = config.model_copy(update={
            "providers": {"scripted": {"type": "scripted", "replies": replies, "embed_dim": 64}},
            "models": {name: spec.model_copy(update={"provider": "scripted", "model": "x", "path": None}) for name, spec in models.items()},
        })
    elif args.model.startswith(("http://", "https://")):
        from tobio.models.server_flag import with_model_server

        config = with_model_server(config, args.model)
    elif args.model.endswith(".gguf"):
        spec = models["chat-default"].model_copy(update={"model": str(Path(args.model).resolve()), "path": None})
        config = config.model_copy(update={"models": {**models, "bench-chat": spec}})
        bundle = "bench-chat"
    elif args.model != "chat-default":
        if args.model not in models:
            raise SystemExit(f"--model: no bundle named {args.model!r} (have: {', '.join(models)}); or give a URL or a .gguf path")
        bundle = args.model
    return config, bundle


async def run(args: argparse.Namespace, kernel: Kernel, workdir: Path, bundle: str) -> dict[str, Any]:
    plan = Plan.quick() if args.quick else Plan()
    only = set(args.only or CATEGORIES)
    log = Transcript(path=args.transcript)
    if args.transcript:
        Path(args.transcript).write_text("")
    tobio = TobioSystem(kernel, workdir, bundle, args.seed, args.timeout)
    began = time.perf_counter()
    scores = await interview(tobio, plan, only, log, kernel)
    tobio_s = time.perf_counter() - began
    bare_scores: dict[str, float] = {}
    if not args.no_bare:
        bare_scores = await interview(BareSystem(kernel, bundle, args.seed), plan, only, log, kernel)
    out: dict[str, Any] = {k: scores[k] for k in CATEGORIES if k in scores}
    out |= {k: v for k, v in scores.items() if k not in out and k not in ("score", "score_classic")}
    out["score"] = scores["score"]
    out["score_classic"] = scores["score_classic"]
    out["bare_score"] = bare_scores.get("score")
    out["lift"] = round(scores["score"] - bare_scores["score"], 4) if bare_scores else None
    out["bare"] = {k: bare_scores[k] for k in CATEGORIES if k in bare_scores}
    out["lift_by_category"] = {k: round(scores[k] - bare_scores[k], 4) for k in CATEGORIES if k in scores and k in bare_scores}
    out["model"] = args.model
    out["quick"] = args.quick
    out["seed"] = args.seed
    out["without"] = sorted(args.without)
    out["variant"] = args.variant
    out["people_settings"] = args.people
    out["memory_settings"] = args.memory
    out["emotion_settings"] = args.emotion
    out["seconds"] = {"tobio": round(tobio_s, 1), "total": round(time.perf_counter() - began, 1)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="chat-default", help="bundle name, OpenAI-compatible URL (…/v1[#model]), .gguf path, or `scripted`")
    parser.add_argument("--quick", action="store_true", help="a small configuration (smoke test)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--only", nargs="*", choices=CATEGORIES, help="run only these categories")
    parser.add_argument("--without", nargs="*", default=[], help="modules to leave out (e.g. people) to measure what they add")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare model (no bare_score or lift)")
    parser.add_argument("--people-depth", type=int, default=1, help="where the per-person block goes (messages above the newest)")
    parser.add_argument("--reflect-every", type=int, default=20, help="messages from a person between reflections (0: never)")
    parser.add_argument("--people", nargs="*", default=[], metavar="KEY=VALUE", help="people module settings (sign=false, in_prompt=false…)")
    parser.add_argument("--memory", nargs="*", default=[], metavar="KEY=VALUE", help="memory module settings (k=3, memory_tokens=128…)")
    parser.add_argument("--emotion", nargs="*", default=[], metavar="KEY=VALUE", help="emotion module settings (mood_in_prompt=false, recall_congruence=0…)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one reply")
    parser.add_argument("--transcript", help="write every line said (JSON lines) to this file")
    parser.add_argument("--variant", default="baseline", help="prompt format: baseline, short-system, persona-near, fewshot-system, stop; note-they, note-as-user, note-user-role (the per-person note); no-fresh (no resampling); comma-separated to combine")
    args = parser.parse_args(argv)
    apply_variant(args.variant)
    logging.basicConfig(level=logging.WARNING)
    config, bundle = kernel_config(args)
    with tempfile.TemporaryDirectory(prefix="tobio-person-") as tmp:
        workdir = Path(tmp)
        kernel = Kernel(config, database=f"duckdb:///{workdir / 'bench.duckdb'}", spawn_agents=False).start()
        try:
            result = kernel.call(run(args, kernel, workdir, bundle))
        finally:
            kernel.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
