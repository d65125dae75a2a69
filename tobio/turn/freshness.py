"""Repetition and parroting control: a reply that reuses too many word n-grams of the agent's own
recent replies, or of what the other speakers just said, is sampled again with a penalty.

Small models loop: asked "Tell me more." twice, SmolLM2-135M says the same sentence twice, and two
personas in a scene hand one line back and forth. Saying again who it is is not a repeat: n-grams made
only of the persona's own words (name, description, examples), or of those and the question's when
compared with its own replies, are not counted, or
"What was your name again?" would be resampled away from "I'm Tobio" (bench: self 0.8 -> 0.2). Checking a finished candidate is cheap (word sets),
and one or two resamples at a higher temperature and repeat penalty, with a new seed, usually find a
fresh reply. Each resample is recorded as a `resample` step of the run that produced the posted
message (what was rejected, how much it overlapped, with what), so `run show` explains it. When every
candidate is stale the least stale one is posted: a turn always gets an answer.

Candidates are judged, and posted, without the sentences they copied from their instructions (echo.py);
one that was nothing but such a copy is as stale as can be. `freshen` is the reply filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from tobio.models.module import runs_of
from tobio.providers.base import ProviderError
from tobio.turn.echo import strip_echoes
from tobio.turn.reply import Reply, tidy

if TYPE_CHECKING:
    from tobio.messages import Message
    from tobio.models.runs import Run

_WORD = re.compile(r"[a-z0-9']+")
N = 3  # word trigrams: long enough that "I think that" alone is not a repeat
THRESHOLD = 0.5  # share of a reply's trigrams found in one recent message that makes it stale
OWN_RECENT = 4  # the agent's own replies compared against
OTHERS_RECENT = 2  # and the other speakers' latest messages
RESAMPLES = 2  # extra candidates at most per turn
# What each resample adds over the turn's parameters, times the attempt number: hotter and more
# averse to repeating; a new seed, or a seeded provider would give back the same reply.
TEMPERATURE_STEP = 0.25
REPEAT_PENALTY_STEP = 0.15
PRESENCE_PENALTY_STEP = 0.4
JUDGED_CHARS = 8000  # of each recent message: a reply (a few hundred tokens) cannot reuse more, and a
# 60 KB message received by several personas must not cost each of them a full scan on the loop


def ngrams(text: str, n: int = N) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@lru_cache(maxsize=128)
def words(text: str) -> frozenset[str]:
    """Cached: a persona's identity words are the same text every turn (a card's description may be 80 KB)."""
    return frozenset(_WORD.findall(text.lower().replace("\u2019", "'")))


def overlap(text: str, other: str, n: int = N, own_words: frozenset[str] = frozenset()) -> float:
    """The share of `text`'s word n-grams also found in `other` (0: nothing reused), not counting
    n-grams made only of `own_words` as reused."""
    mine = ngrams(text, n)
    reused = {g for g in mine & ngrams(other, n) if not own_words.issuperset(g)}
    return len(reused) / len(mine) if mine else 0.0


def identity_words(persona: Any) -> frozenset[str]:
    """Words a reply may repeat freely: the persona's name, description, personality and example
    replies (saying again who you are is in character, and asked "what was your name again?", right)."""
    texts = [persona.name, persona.description, " ".join(persona.personality), *(e.reply for e in persona.example_dialogue)]
    return frozenset(words(" ".join(texts)))


@dataclass(frozen=True)
class Staleness:
    """How much a candidate reuses of one recent message, and whose message it was."""

    score: float
    source: str  # "own" (its own earlier reply) | "other" (someone else's message) | "" (nothing)
    against: str = ""

    def stale(self, threshold: float = THRESHOLD) -> bool:
        return self.score >= threshold


def staleness(candidate: str, own: list[str], others: list[str], own_words: frozenset[str] = frozenset(),
              asked: str = "") -> Staleness:
    """The worst overlap of `candidate` with any one of `own` (its recent replies) or `others`. N-grams
    of `own_words` never count; against its own replies, neither do those of `asked` (the message being
    answered: an answer asked for again reuses its question's words), which parroting it still does."""
    worst = Staleness(0.0, "")
    answering = own_words | words(asked)
    for source, texts in (("own", own), ("other", others)):
        for text in texts:
            score = overlap(candidate, text, own_words=answering if source == "own" else own_words)
            if score > worst.score:
                worst = Staleness(round(score, 3), source, text)
    return worst


def recent(history: list[Message], me: str, own: int = OWN_RECENT, others: int = OTHERS_RECENT) -> tuple[list[str], list[str]]:
    """The agent's last `own` replies and the last `others` messages of anyone else, from a prompt's history."""
    mine = [m.content[-JUDGED_CHARS:] for m in history if m.sender == me and m.content]
    theirs = [m.content[-JUDGED_CHARS:] for m in history if m.sender != me and m.content]
    return mine[-own:] if own else [], theirs[-others:] if others else []


def penalised(params: dict[str, Any], attempt: int) -> dict[str, Any]:
    """The turn's sampling parameters made hotter and more repetition-averse for resample `attempt` (1, 2, …)."""
    out = dict(params)
    out["temperature"] = round(min(1.3, float(out.get("temperature", 0.7)) + TEMPERATURE_STEP * attempt), 3)
    out["repeat_penalty"] = round(float(out.get("repeat_penalty", 1.1)) + REPEAT_PENALTY_STEP * attempt, 3)
    out["presence_penalty"] = round(float(out.get("presence_penalty", 0.0)) + PRESENCE_PENALTY_STEP * attempt, 3)
    if "seed" in out and isinstance(out["seed"], int):
        out["seed"] = out["seed"] + 7919 * attempt
    return out


async def freshen(reply: Reply) -> None:
    """Reply filter: resample a stale reply (see the module docstring)."""
    reply.run, reply.text = await fresh_reply(reply)


async def fresh_reply(reply: Reply, resamples: int | None = None, threshold: float | None = None) -> tuple[Run, str]:
    """Return the reply's run and text if it is fresh, else the first fresh resample (or the least stale
    candidate).

    Resamples are new runs on the same model and messages; each one taken is recorded as a step of the
    run that is returned."""
    prompt, messages, run, text = reply.prompt, reply.messages, reply.run, reply.text
    agent = prompt.agent
    resamples = RESAMPLES if resamples is None else resamples
    threshold = THRESHOLD if threshold is None else threshold
    own, others = recent(prompt.history, agent.name)
    if prompt.incoming is not None and prompt.incoming.content and prompt.incoming.sender != agent.name:
        if not prompt.history or prompt.history[-1].id != prompt.incoming.id:
            others = [*others, prompt.incoming.content[-JUDGED_CHARS:]][-OTHERS_RECENT:]
    mine = identity_words(agent.persona)
    asked = prompt.incoming.content[-JUDGED_CHARS:] if prompt.incoming is not None else ""
    instructions = reply.instructions()

    def judged(raw: str) -> tuple[Staleness, str]:
        said = strip_echoes(tidy(raw), instructions)
        return (staleness(said, own, others, mine, asked) if said else Staleness(1.0, "echo", raw)), said

    first, said = judged(text)
    if not first.stale(threshold) or resamples <= 0 or run.status == "cancelled":  # a stopped turn starts no runs
        return run, said or text
    # (staleness, run, text as it would be said, the parameters it was sampled with)
    sampled = dict(run.request.params)  # the bundle's parameters with the turn's over them
    candidates: list[tuple[Staleness, Run, str, dict[str, Any]]] = [(first, run, said, sampled)]
    for attempt in range(1, resamples + 1):
        params = penalised(sampled, attempt)
        again = run.model.run(messages, params=params, thread_id=prompt.thread_id, agent_id=agent.id)
        try:
            await again.wait()
        except ProviderError:  # a failed resample (recorded as a failed run) leaves the reply it had
            break
        again_staleness, again_said = judged(again.text)
        candidates.append((again_staleness, again, again_said, params))
        if not candidates[-1][0].stale(threshold):
            break
    chosen = min(candidates, key=lambda c: c[0].score)  # the earliest of the least stale
    for attempt, (before, after) in enumerate(zip(candidates, candidates[1:]), start=1):
        why = before[0]
        await runs_of(agent.kernel).record_step(
            chosen[1].id, agent.id, "resample", "freshness",
            {"attempt": attempt, "n": N, "threshold": threshold,
             "params": {k: after[3][k] for k in ("temperature", "repeat_penalty", "presence_penalty", "seed") if k in after[3]}},
            {"rejected_run": before[1].id, "rejected": before[2], "overlap": why.score, "with": why.source, "like": why.against,
             "run": after[1].id, "run_overlap": after[0].score, "chosen": after[1] is chosen[1]})
    # Every candidate only repeated its instructions: say that rather than nothing.
    return chosen[1], chosen[2] or (text if chosen[1] is run else chosen[1].text)
