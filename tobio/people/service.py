"""The people service: learns facts from what is said, keeps each agent's view of each person current.

It lives on the kernel's loop. Current facts are cached per (agent, person) so a prompt never waits
on the database; every change is written as a new version (the old one superseded), in the order
it was made (the DB thread runs calls in order). News ("I moved to Paris") ends the old value's
validity window; a correction ("no, my dog is called Rex") retracts it: kept, marked with the message
that retracted it, and never shown or recalled again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tobio.db.migrations import utcnow
from tobio.messages import Message
from tobio.people import store
from tobio.people.store import CONFIDENCE, Change, FactVersion

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from tobio.kernel import Kernel
    from tobio.people.facts import Fact, Statement
    from tobio.people.module import PeopleSettings

log = logging.getLogger(__name__)
KEY = "people"  # agent.module_state key: per-person message counts, running sentiment, recent changes
CHANGES = "changed"  # per person in module_state: {key: [old value, message count when it changed]}


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
        self._gone: dict[tuple[int, str, str], set[str]] = {}  # values retracted since start (no "used to")
        self.last_said: dict[tuple[int, str], str] = {}  # (agent id, person) -> what the agent last said to them
        self.listeners: list[Any] = []  # fn(agent, person, message) after a person's message was learnt from

    async def load(self, before: Callable[[Connection], None] | None = None) -> None:
        """Read the current facts and reflections, in one call to the database (after `before(conn)`, the
        module's migrations: a start waits for one transaction, not four)."""

        def read(conn: Connection) -> tuple[list[FactVersion], list[tuple[int, str, str, str]], list[tuple[int, int, str | None, str]]]:
            if before is not None:
                before(conn)
            return store.current_facts(conn), store.retracted(conn), store.current_reflections(conn)

        facts, retracted, reflections = await self.kernel.db.call(read)
        for fact in facts:
            self.facts.setdefault(fact.agent_id, {}).setdefault(fact.person, {})[fact.key] = fact
        for agent, who, key, value in retracted:
            self._gone.setdefault((agent, who, key), set()).add(value)
        for reflection_id, agent_id, person, content in reflections:
            self.reflections.setdefault((agent_id, person), []).append(content)
            self.reflection_ids.setdefault((agent_id, person), []).append(reflection_id)

    # -- reading ---------------------------------------------------------------------------------
    def known(self, agent_id: int, person: str) -> dict[str, str]:
        """What the agent currently knows about `person` (key -> value)."""
        return {k: v.value for k, v in self.facts.get(agent_id, {}).get(person, {}).items()}

    def recent_changes(self, agent: Any, person: str, within: int) -> dict[str, str]:
        """{key: old value} of facts that changed in the last `within` messages from `person` (for "used to")."""
        stats = agent.module_state.get(KEY, {}).get(person, {})
        count = int(stats.get("n", 0))
        return {k: str(v[0]) for k, v in stats.get(CHANGES, {}).items() if count - int(v[1]) <= within}

    def people_of(self, agent_id: int) -> dict[str, dict[str, FactVersion]]:
        return self.facts.get(agent_id, {})

    # -- learning --------------------------------------------------------------------------------
    def observe(self, message: Message) -> None:
        """Transport observer: each persona agent that received a message learns about its sender."""
        if not message.content or message.sender is None or message.channel is None:
            return
        subscribers = list(self.kernel.transport.channels.get(message.channel, {}).values())
        if message.sender_id is not None:  # what a speaker said last to each listener ("no, it's Rex" refers to it)
            for sub in subscribers:
                if sub.receiver.id != message.sender_id:
                    self.last_said[(message.sender_id, str(sub.receiver.name))] = message.content
        statement: Statement | None = None
        for sub in subscribers:
            agent = sub.receiver
            if sub.receiver.id == message.sender_id or not hasattr(agent, "persona"):
                continue
            if statement is None:
                from tobio.people.extract import read  # its rules compile ~5 ms of patterns: not at every start
                from tobio.people.facts import Statement  # with the first message (a start sees none)

                statement = read(message.content) if self.settings.rules else Statement([])
            self._note(agent, message, statement)
            for listener in list(self.listeners):
                listener(agent, message.sender, message)

    def _note(self, agent: Any, message: Message, statement: Statement) -> None:
        """Count the message, update the running sentiment, and record new facts, corrections and labels."""
        from tobio.emotion.appraise import _vader
        from tobio.people.facts import Fact

        person = str(message.sender)
        stats = agent.module_state.setdefault(KEY, {}).setdefault(person, {"n": 0, "s": 0.0})
        compound = _vader().polarity_scores(message.content)["compound"]
        stats["n"] += 1
        stats["s"] = round(compound if stats["n"] == 1 else 0.6 * stats["s"] + 0.4 * compound, 4)
        derived = [Fact("relationship", relationship_label(stats["n"], stats["s"])), Fact("feeling", feeling_label(stats["s"]))]
        changed: dict[str, str] = {}
        if statement.correction:
            self.correct(agent.id, person, statement, message.id, at=message.created_at)
        else:
            self.learn(agent.id, person, statement.facts, message.id, "rule", at=message.created_at, changed=changed)
            for key, value in statement.ended:
                old = self._matching(agent.id, person, key, value)
                if old is not None:
                    self.end(agent.id, person, old.key, at=message.created_at)
                    changed[old.key] = old.value
        self.learn(agent.id, person, derived, message.id, "derived", at=message.created_at)
        recent = stats.setdefault(CHANGES, {})
        for key, old_value in changed.items():
            recent[key] = [old_value, stats["n"]]
        for key in list(recent):  # a retracted value was never true: no "used to" for it
            if recent[key][0] in self.retracted_values(agent.id, person, key):
                recent.pop(key)

    def learn(self, agent_id: int, person: str, facts: list[Fact], message_id: int | None, source: str,
              at: datetime | None = None, changed: dict[str, str] | None = None, retract: bool = False) -> list[FactVersion]:
        """Record facts; returns the new versions. A changed value ends the old version's window (news),
        or with `retract` marks it never true (a correction). `changed` collects {key: old value} of news."""
        from tobio.people.facts import ALWAYS_LIST

        if not facts:
            return []
        now = at or utcnow()
        known = self.facts.setdefault(agent_id, {}).setdefault(person, {})
        new: list[FactVersion] = []
        ended: list[Change] = []
        for fact in facts:
            value = fact.value.strip()
            old = known.get(fact.key)
            if fact.key in ALWAYS_LIST and old is not None and source != "command" and not retract:
                items = [v.strip() for v in old.value.split(",")]
                if value.lower() in (i.lower() for i in items):
                    continue
                value = ", ".join(items[-5:] + [value])
            if old is not None and old.value == value:
                continue
            since = now
            if old is not None and retract:
                ended.append(Change(old.id, retract=True, by=message_id))
                self._retracted(agent_id, person, old, message_id)
                since = old.valid_from or old.created_at  # the corrected value was true all along
            elif old is not None:
                ended.append(Change(old.id))
                if changed is not None:
                    changed[fact.key] = old.value
            version = FactVersion(self.kernel.db.next_ids("people_facts"), agent_id, person, fact.key, value, source, message_id,
                                  now, None, since, None, CONFIDENCE.get(source, CONFIDENCE["rule"]))
            known[fact.key] = version
            new.append(version)
        if new or ended:
            rows = [tuple(getattr(v, c) for c in store.FACT_COLUMNS) for v in new]
            self._write(store.write_facts, rows, ended, now)
        return new

    def correct(self, agent_id: int, person: str, statement: Statement, message_id: int | None,
                at: datetime | None = None, source: str = "correction") -> list[FactVersion]:
        """The person said the agent got something wrong: denied values are retracted, stated ones replace
        what they correct. A fact with no key ("no, it's Rex") takes the key of the value it denies, else
        of the known value the agent last said to them ("your dog is Max")."""
        from tobio.people.facts import Fact

        now = at or utcnow()
        keys: list[str] = []
        for key, value in statement.denied:
            old = self._matching(agent_id, person, key, value)
            if old is not None:
                keys.append(old.key)
        facts = []
        for fact in statement.facts:
            if fact.key:
                facts.append(fact)
                continue
            key = keys[0] if keys else self._key_last_said(agent_id, person)
            if key is not None:
                facts.append(Fact(key, fact.value))
        stated = {f.key for f in facts}
        for key in keys:
            if key not in stated:
                self.retract(agent_id, person, key, message_id, at=now)
        return self.learn(agent_id, person, facts, message_id, source, at=now, retract=True)

    def _matching(self, agent_id: int, person: str, key: str | None, value: str) -> FactVersion | None:
        """The current fact `key` (else any key) whose value is `value` (case and articles aside)."""
        def plain(text: str) -> str:
            return " ".join(w for w in text.lower().split() if w not in ("a", "an", "the"))

        held = self.facts.get(agent_id, {}).get(person, {})
        for k, version in held.items():
            if (key is None or k == key) and plain(version.value) == plain(value):
                return version
        for k, version in held.items():  # "I'm not a baker" denies job=baker as well as is=a baker
            if k not in ("relationship", "feeling") and plain(version.value) == plain(value):
                return version
        return None

    def _key_last_said(self, agent_id: int, person: str) -> str | None:
        """Which known fact the agent's last words to `person` named (what "no, it's Rex" corrects)."""
        said = " " + " ".join(self.last_said.get((agent_id, person), "").lower().replace(",", " ").replace(".", " ").split()) + " "
        for key, version in self.facts.get(agent_id, {}).get(person, {}).items():
            if key not in ("relationship", "feeling") and f" {version.value.lower()} " in said:
                return key
        return None

    def end(self, agent_id: int, person: str, key: str, at: datetime | None = None) -> bool:
        """A fact stopped being true ("I don't live in Berlin anymore"): its window closes, no successor."""
        old = self.facts.get(agent_id, {}).get(person, {}).pop(key, None)
        if old is None:
            return False
        self._write(store.write_facts, [], [Change(old.id)], at or utcnow())
        return True

    def retract(self, agent_id: int, person: str, key: str, by: int | None, at: datetime | None = None,
                recall: bool = True) -> FactVersion | None:
        """The fact was never true (the person said so, message `by`; None: a command): kept, marked
        retracted, gone from prompts, and the message it came from is no longer recalled."""
        old = self.facts.get(agent_id, {}).get(person, {}).pop(key, None)
        if old is None:
            return None
        self._write(store.write_facts, [], [Change(old.id, retract=True, by=by)], at or utcnow())
        self._retracted(agent_id, person, old, by, recall)
        return old

    def forget(self, agent_id: int, person: str, key: str) -> bool:
        """Stop believing a fact (a command): it is retracted (kept, marked), see `retract`."""
        return self.retract(agent_id, person, key, None) is not None

    def _retracted(self, agent_id: int, person: str, old: FactVersion, by: int | None, recall: bool = True) -> None:
        """After a retraction: no "used to" for it, and memory stops recalling the message it came from."""
        self._gone.setdefault((agent_id, person, old.key), set()).add(old.value)
        for agent in self.kernel.agents.live.values():
            if agent.id == agent_id:
                agent.module_state.get(KEY, {}).get(person, {}).get(CHANGES, {}).pop(old.key, None)
        if recall and old.message_id is not None and old.message_id != by:
            self._write_async(self._forget_message(agent_id, old, by))

    def retracted_values(self, agent_id: int, person: str, key: str) -> set[str]:
        """Values of `key` the person said were wrong (a reply naming one is checked, check.py)."""
        return self._gone.get((agent_id, person, key), set())

    async def _forget_message(self, agent_id: int, old: FactVersion, by: int | None) -> None:
        from tobio.memory.service import Memory

        try:
            memory = Memory.of(self.kernel)
        except LookupError:
            return
        reason = f"people: {old.key}={old.value} retracted" + (f" by message {by}" if by is not None else "")
        await memory.forget(agent_id, old.message_id or 0, reason, "people")

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
            await self.kernel.db.call(fn, *args)

        self._write_async(go())

    def _write_async(self, work: Any) -> None:
        async def go() -> None:
            try:
                await work
            except Exception:
                log.exception("people: write failed")

        info = self.kernel.tasks.spawn(go(), name="people:write", kind="job", owner="people")
        self._pending.add(info.task)
        info.task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait until every queued write is done (commands, replay and tests read the database)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
