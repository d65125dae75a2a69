"""Swipes: regenerate an agent's latest reply, keep every alternative, choose one; the mind follows the choice.

The alternatives of a turn are the agent's replies to the same incoming message (`messages.reply_to`).
Exactly one is in the histories at a time: the others' pushes are withdrawn (tables.py), so the next
prompt, recall and every read of a thread see only the chosen one. The agent's state (its state_dict
and what modules keep in it: emotion's mood, lore's timers, people's counts) is put back too: to the
state it had when the turn began before a new alternative is generated, and to the state an
alternative left it in when that one is chosen again. Modules that cache what was said (memory's
index, people's facts) hear of each change through the SWIPED hook and reload.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tobio.db.migrations import utcnow
from tobio.errors import CommandError
from tobio.hooks import SWIPED
from tobio.messages import Delivery, Delta, Message
from tobio.swipes import store
from tobio.swipes.store import Said
from tobio.tasks import within

if TYPE_CHECKING:
    from tobio.agents.base import Agent
    from tobio.kernel import Kernel
    from tobio.turn.prompt import Prompt

STARTS_KEPT = 256  # turn-start states kept in memory (the newest turns; older ones come from the `state` table)


@dataclass(frozen=True)
class Swiped:
    """What a swipe or an edit changed: messages out of the histories and back in, and whose histories."""

    agent_id: int  # whose reply it was
    channel: str
    withdrawn: tuple[int, ...]
    restored: tuple[int, ...]
    agents: tuple[int, ...]  # every agent whose threads lost or regained a message


@dataclass(frozen=True)
class Alternative:
    """One reply of a turn: its number (1 = the first said), and whether it is the chosen one."""

    number: int
    message: Message
    chosen: bool


@dataclass(frozen=True)
class Turn:
    """The turn a swipe acts on: who answered which message on which channel, and its alternatives."""

    agent_id: int
    channel: str
    incoming: Message
    replies: list[Said]

    def alternatives(self) -> list[Alternative]:
        return [Alternative(i + 1, r.message, not r.withdrawn) for i, r in enumerate(self.replies)]


_services: weakref.WeakKeyDictionary[Kernel, Swipes] = weakref.WeakKeyDictionary()


class Swipes:
    """The kernel's swipes; on its loop."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.started: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()  # (agent, incoming) -> state
        self._ready = False
        self._lock = asyncio.Lock()

    @staticmethod
    def of(kernel: Kernel) -> Swipes:
        service = _services.get(kernel)
        if service is None:
            service = _services[kernel] = Swipes(kernel)
        return service

    # -- the turn-start snapshot (a PROMPT step) ---------------------------------------------------
    async def turn_started(self, prompt: Prompt) -> None:
        """Remember the agent's state as its turn on an incoming message begins (once per message: a retry
        begins from the same state)."""
        agent, incoming = prompt.agent, prompt.incoming
        current = agent.current
        if incoming is None or current is None or current.message.id != incoming.id:
            return  # a preview (`agent prompt`) or a read-ahead, not a turn
        key = (agent.id, incoming.id)
        if key not in self.started:
            self.started[key] = self.kernel.agents.full_state(agent)
            while len(self.started) > STARTS_KEPT:
                self.started.popitem(last=False)

    # -- reading -----------------------------------------------------------------------------------
    async def ready(self) -> None:
        if self._ready:
            return
        from tobio.swipes.tables import setup

        db = self.kernel.db

        def create(conn: Any) -> None:
            setup(conn)
            db.track_ids(conn, "swipe_states")

        await self.kernel.db.call(create)
        self._ready = True

    async def turn(self, channel: str, agent: str | None = None) -> Turn:
        """The latest turn on `channel`: the newest message there is a reply (of `agent`), or the message
        the withdrawn replies of an interrupted retry answered."""
        await self.ready()
        await self.kernel.flush()
        last, incoming, replies = await self.kernel.db.call(store.latest_turn, channel, agent)
        if last is None:
            raise CommandError(f"nothing has been said on '{channel}' yet")
        if incoming is not None:
            assert last.message.sender_id is not None
            return Turn(last.message.sender_id, channel, incoming.message, replies)
        agent_id = replies[0].message.sender_id if replies else self.live(agent).id if agent else None
        if agent_id is None:
            raise CommandError(f"the newest message on '{channel}' is not a reply; say whose turn to retry with --agent")
        return Turn(agent_id, channel, last.message, [r for r in replies if r.message.sender_id == agent_id])

    async def alternatives(self, channel: str, agent: str | None = None) -> list[Alternative]:
        return (await self.turn(channel, agent)).alternatives()

    def live(self, name: str | None = None, agent_id: int | None = None) -> Agent:
        agents = self.kernel.agents.live
        found = agents.get(name) if name else next((a for a in agents.values() if a.id == agent_id), None)
        if found is None:
            raise CommandError(f"agent '{name or agent_id}' is not running")
        return found

    # -- acting ------------------------------------------------------------------------------------
    async def retry(self, channel: str, agent: str | None = None, *, timeout: float | None = 300.0) -> Message | None:
        """Withdraw the agent's latest reply on `channel`, put its state back to the turn's start and let it
        answer the same message again. Returns the new reply (None with `timeout=0`: do not wait)."""
        async with self._lock:
            turn = await self.turn(channel, agent)
            replier = self._idle(turn)
            if turn.incoming.sender_id == replier.id:
                raise CommandError(f"the newest message on '{channel}' is {replier.name}'s own, not an answer to anything "
                                   "(a greeting?): there is nothing to answer again")
            thread = self.kernel.transport.subscription(replier.id, channel)
            if thread is None:
                raise CommandError(f"{replier.name} is not on '{channel}'")
            before = await self.before(replier, turn)
            withdrawn = await self._leave(replier, turn)
            await self._become(replier, before, turn, withdrawn, [], thread.thread_id)
            heard: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

            def hear(item: Message | Delta) -> None:
                if isinstance(item, Message) and item.sender_id == replier.id and not heard.done():
                    heard.set_result(item)

            unlisten = self.kernel.transport.listen(channel, hear)
            replier.deliver(Delivery(turn.incoming, thread.thread_id))
        try:
            if timeout == 0:
                return None
            try:
                return await within(heard, timeout)
            except TimeoutError:
                raise CommandError(f"{replier.name} did not answer again within {timeout:g} s (see `log tail`)") from None
        finally:
            unlisten()

    async def choose(self, channel: str, number: int, agent: str | None = None) -> list[Alternative]:
        """Make alternative `number` (1 = the first) the one in the histories, and the agent's state the one
        it left the agent in; returns the alternatives as they are now."""
        async with self._lock:
            turn = await self.turn(channel, agent)
            if not turn.replies:
                raise CommandError(f"the latest turn on '{channel}' has no replies to choose from")
            if not 1 <= number <= len(turn.replies):
                raise CommandError(f"choose a reply from 1 to {len(turn.replies)} (see `message alternatives {channel}`)")
            target = turn.replies[number - 1]
            if not target.withdrawn and sum(not r.withdrawn for r in turn.replies) == 1:
                return turn.alternatives()
            replier = self._idle(turn)
            thread = self.kernel.transport.subscription(replier.id, channel)
            leaving = [r.message.id for r in turn.replies if not r.withdrawn and r.message.id != target.message.id]
            saves = self._after_rows(replier, leaving)
            now = utcnow()

            def swap(conn: Any) -> tuple[list[int], list[int], dict[str, Any] | None]:
                """One transaction: the state each leaving reply left saved, its pushes out, the chosen one's in."""
                for row in saves:
                    store.save_state(conn, row)
                return (store.withdraw(conn, leaving, "swipe", now), store.restore(conn, [target.message.id], now),
                        store.saved_state(conn, replier.id, target.message.id, "after"))

            owners, restored, state = await self.kernel.db.call(swap)
            if state is None:  # chosen before it was ever left (an import's alternatives): its turn's start
                state = await self.before(replier, turn)
            await self._become(replier, state, turn, (leaving, owners), [target.message.id], thread.thread_id if thread else None,
                               also=tuple(restored))
            return [Alternative(a.number, a.message, a.number == number) for a in turn.alternatives()]

    def _idle(self, turn: Turn) -> Agent:
        replier = self.live(agent_id=turn.agent_id)
        if replier.current is not None or not replier.inbox.empty():
            raise CommandError(f"{replier.name} is still answering; stop it or wait before choosing another reply")
        return replier

    async def before(self, agent: Agent, turn: Turn) -> dict[str, Any]:
        """The agent's state as the turn began: saved by an earlier swipe, else seen at its start by this
        process, else the `state` table's state before its first reply was committed."""
        db = self.kernel.db
        saved = await db.call(store.saved_state, agent.id, turn.incoming.id, "before")
        if saved is not None:
            return saved
        state = self.started.get((agent.id, turn.incoming.id))
        if state is None and turn.replies:
            state = await db.call(store.state_before, agent.id, turn.replies[0].message.created_at)
        if state is None:
            state = self.kernel.agents.full_state(agent)
        await self._save(agent, turn.incoming.id, "before", state)
        return state

    async def _save(self, agent: Agent, message_id: int, kind: str, state: dict[str, Any]) -> None:
        row = (self.kernel.db.next_ids("swipe_states"), agent.id, message_id, kind, state, utcnow())
        await self.kernel.db.call(store.save_state, row)

    def _after_rows(self, agent: Agent, leaving: list[int]) -> list[tuple[int, int, int, str, dict[str, Any], datetime]]:
        """The rows that save the state the agent is in now as the one each leaving reply left it in."""
        state, now = self.kernel.agents.full_state(agent), utcnow()
        return [(self.kernel.db.next_ids("swipe_states"), agent.id, message_id, "after", state, now) for message_id in leaving]

    async def _leave(self, agent: Agent, turn: Turn) -> tuple[list[int], list[int]]:
        """Withdraw the reply in the histories now, saving the state it left the agent in (one transaction)."""
        leaving = [r.message.id for r in turn.replies if not r.withdrawn]
        if not leaving:
            return [], []
        saves, now = self._after_rows(agent, leaving), utcnow()

        def leave(conn: Any) -> list[int]:
            for row in saves:
                store.save_state(conn, row)
            return store.withdraw(conn, leaving, "swipe", now)

        return leaving, await self.kernel.db.call(leave)

    async def _become(self, agent: Agent, state: dict[str, Any], turn: Turn, withdrawn: tuple[list[int], list[int]],
                      restored: list[int], thread_id: int | None, also: tuple[int, ...] = ()) -> None:
        """Put the agent in `state`, persist it, and tell the modules what left and came back."""
        manager = self.kernel.agents
        manager.restore_state(agent, state)
        last_turns = getattr(agent, "last_turns", None)
        if isinstance(last_turns, dict) and thread_id is not None:
            last_turns.pop(thread_id, None)  # its prefill opening ends with the reply that is gone
        await manager.save_state(agent)
        await self.kernel.flush()
        agents = tuple(sorted({agent.id, *withdrawn[1], *also}))
        await self.kernel.hooks.each(SWIPED, Swiped(agent.id, turn.channel, tuple(withdrawn[0]), tuple(restored), agents))
