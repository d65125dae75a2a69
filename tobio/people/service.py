"""The people service: learns facts from what is said, keeps each agent's view of each person current.

It lives on the kernel's loop. Current facts are cached per (agent, person) so a prompt never waits
on the database; every change is written as a new version (the old one superseded), in the order
it was made (the DB thread runs calls in order).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tobio.db.migrations import utcnow
from tobio.messages import Message
from tobio.people import store
from tobio.people.extract import ALWAYS_LIST, Fact, extract
from tobio.people.store import FactVersion

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.people.module import PeopleSettings

log = logging.getLogger(__name__)
KEY = "people"  # agent.module_state key: per-person message counts and running sentiment


def feeling_label(sentiment: float) -> str:
    """How the agent feels about someone, from the running sentiment of what they said to it."""
    if sentiment >= 0.25:
        return "warm toward them"
    if sentiment <= -0.25:
        return "hurt and wary: they have been unkind to you"
    return "neutral"


def relationship_label(count: int, sentiment: float) -> str:
    if sentiment <= -0.25:
        return "someone who has been rude to you"
    if count < 4:
        return "someone you have just met"
    if count < 40:
        return "an acquaintance you are getting to know"
    return "a friend you talk with often"


class People:
    """Per-agent, per-person facts and reflections, cached and versioned."""

    def __init__(self, kernel: Kernel, settings: PeopleSettings) -> None:
        self.kernel = kernel
        self.settings = settings
        self.facts: dict[int, dict[str, dict[str, FactVersion]]] = {}  # agent id -> person -> key -> current version
        self.reflections: dict[tuple[int, str | None], list[str]] = {}
        self.reflection_ids: dict[tuple[int, str | None], list[int]] = {}  # the current ones' row ids, same order
        self._pending: set[asyncio.Task[None]] = set()
        self.listeners: list[Any] = []  # fn(agent, person, message) after a person's message was learnt from

    async def load(self) -> None:
        for fact in await self.kernel.db.call(store.current_facts):
            self.facts.setdefault(fact.agent_id, {}).setdefault(fact.person, {})[fact.key] = fact
        for reflection_id, agent_id, person, content in await self.kernel.db.call(store.current_reflections):
            self.reflections.setdefault((agent_id, person), []).append(content)
            self.reflection_ids.setdefault((agent_id, person), []).append(reflection_id)

    # -- reading ---------------------------------------------------------------------------------
    def known(self, agent_id: int, person: str) -> dict[str, str]:
        """What the agent currently knows about `person` (key -> value)."""
        return {k: v.value for k, v in self.facts.get(agent_id, {}).get(person, {}).items()}

    def people_of(self, agent_id: int) -> dict[str, dict[str, FactVersion]]:
        return self.facts.get(agent_id, {})

    # -- learning --------------------------------------------------------------------------------
    def observe(self, message: Message) -> None:
        """Transport observer: each persona agent that received a message learns about its sender."""
        if not message.content or message.sender is None or message.channel is None:
            return
        for sub in list(self.kernel.transport.channels.get(message.channel, {}).values()):
            agent = sub.receiver
            if sub.receiver.id == message.sender_id or not hasattr(agent, "persona"):
                continue
            facts = extract(message.content) if self.settings.rules else []
            self._note(agent, message, facts)
            for listener in list(self.listeners):
                listener(agent, message.sender, message)

    def _note(self, agent: Any, message: Message, facts: list[Fact]) -> None:
        """Count the message, update the running sentiment, and record new facts and labels."""
        from tobio.emotion.appraise import _vader

        person = str(message.sender)
        stats = agent.module_state.setdefault(KEY, {}).setdefault(person, {"n": 0, "s": 0.0})
        compound = _vader().polarity_scores(message.content)["compound"]
        stats["n"] += 1
        stats["s"] = round(compound if stats["n"] == 1 else 0.6 * stats["s"] + 0.4 * compound, 4)
        derived = [Fact("relationship", relationship_label(stats["n"], stats["s"])), Fact("feeling", feeling_label(stats["s"]))]
        self.learn(agent.id, person, facts, message.id, "rule", at=message.created_at)
        self.learn(agent.id, person, derived, message.id, "derived", at=message.created_at)

    def learn(self, agent_id: int, person: str, facts: list[Fact], message_id: int | None, source: str,
              at: datetime | None = None) -> list[FactVersion]:
        """Record facts (a changed value supersedes the old version); returns the new versions."""
        if not facts:
            return []
        now = at or utcnow()
        known = self.facts.setdefault(agent_id, {}).setdefault(person, {})
        new: list[FactVersion] = []
        superseded: list[int] = []
        for fact in facts:
            value = fact.value.strip()
            old = known.get(fact.key)
            if fact.key in ALWAYS_LIST and old is not None and source != "command":
                items = [v.strip() for v in old.value.split(",")]
                if value.lower() in (i.lower() for i in items):
                    continue
                value = ", ".join(items[-5:] + [value])
            if old is not None and old.value == value:
                continue
            if old is not None:
                superseded.append(old.id)
            version = FactVersion(self.kernel.db.next_ids("people_facts"), agent_id, person, fact.key, value, source, message_id, now)
            known[fact.key] = version
            new.append(version)
        if new or superseded:
            rows = [tuple(getattr(v, c) for c in store.FACT_COLUMNS) for v in new]
            self._write(store.write_facts, rows, superseded, now)
        return new

    def forget(self, agent_id: int, person: str, key: str) -> bool:
        """Supersede a fact without a successor (the agent no longer believes it)."""
        old = self.facts.get(agent_id, {}).get(person, {}).pop(key, None)
        if old is None:
            return False
        self._write(store.write_facts, [], [old.id], utcnow())
        return True

    def set_reflections(self, agent_id: int, person: str | None, lines: list[str], upto: int | None) -> tuple[list[int], list[int]]:
        """A new batch of reflections about `person` replaces the previous one (which stays, superseded).
        Returns the new rows' ids and those of the batch it replaced."""
        now = utcnow()
        first = self.kernel.db.next_ids("people_reflections", max(1, len(lines)))
        rows = [(first + i, agent_id, person, line, upto, now, None) for i, line in enumerate(lines)]
        self.reflections[(agent_id, person)] = list(lines)
        old = self.reflection_ids.get((agent_id, person), [])
        self.reflection_ids[(agent_id, person)] = [row[0] for row in rows]
        self._write(store.write_reflections, agent_id, person, rows, now)
        return [row[0] for row in rows], old

    def _write(self, fn: Any, *args: Any) -> None:
        """Queue a write on the DB thread (in call order); failures are logged, never raised into a post."""
        async def go() -> None:
            try:
                await self.kernel.db.call(fn, *args)
            except Exception:
                log.exception("people: write failed")

        info = self.kernel.tasks.spawn(go(), name="people:write", kind="job", owner="people")
        self._pending.add(info.task)
        info.task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait until every queued write is done (commands, replay and tests read the database)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
