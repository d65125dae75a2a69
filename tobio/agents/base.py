"""Agents are code + config + state.

- code: a subclass of `Agent` (its `on_message` is the behaviour);
- config: an immutable pydantic model (`Config`) validated from a YAML file;
- state: whatever `state_dict()` returns (JSON-able). The kernel saves it after each message when it
  changed, moving the previous one to the `state` table, and `load_state_dict` brings it back on restart.

Handling is recorded (see handling.py): when `on_message` returns, the message is marked handled; a
reply posted with `say` while handling carries the mark and the state with it, in one transaction.
Not answering is a choice the record keeps ("seen, not answered"), so return without saying anything
rather than skipping messages some other way.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from tobio.agents.inbox import Inbox
from tobio.config.schema import Frozen, Name
from tobio.hooks import SHOULD_ANSWER
from tobio.messages import Delivery, Delta, Message

if TYPE_CHECKING:
    from tobio.kernel import Kernel

log = logging.getLogger(__name__)
YIELD_EVERY = 32  # messages an agent handles in a row before it lets the loop run others
# The delivery the current task is handling: only the agent's own task sees it, so a `say` made by
# other code (a front end, a test) while the agent is mid-message is not taken for its reply.
_handling: ContextVar[Delivery | None] = ContextVar("tobio_handling", default=None)


class AgentConfig(Frozen):
    """Fields every agent file has; agent types subclass this for their own."""

    name: Name
    type: str
    description: str = ""
    channels: list[Name] = Field(default_factory=list, description="channels to subscribe to at spawn")
    commands: list[str] = Field(default_factory=list, description="command prefixes this agent may run")
    max_failures: int = Field(5, ge=1, description="pause the agent after this many failures in a row")
    sql_all_rows: bool = Field(False, description="let this agent's `sql` see every agent's rows (read-only still)")
    kernel_group: Name | None = Field(
        None, description="with several kernels on one database: run only in kernels of this group (their `cluster.group`)")


class Agent:
    """Base class. Override `on_message`; keep everything that should survive a restart in state_dict."""

    type_name: ClassVar[str] = "agent"
    Config: ClassVar[type[AgentConfig]] = AgentConfig

    def __init__(self, kernel: Kernel, config: AgentConfig, agent_id: int) -> None:
        self.kernel = kernel
        self.config = config
        self.id = agent_id
        self.name = config.name
        self.inbox: Inbox[Delivery] = Inbox()
        self.status = "running"
        self.module_state: dict[str, Any] = {}  # state that modules keep per agent (emotion's affect, …)
        self.delivered = 0
        self.handled = 0
        self.failures = 0
        self.current: Delivery | None = None  # being handled now (`wait` counts it as busy)
        self.cursors: dict[int, int] = {}  # thread id -> last message id marked handled (queued or durable)
        self._resumed = asyncio.Event()
        self._resumed.set()

    # -- behaviour (override) --------------------------------------------------------------------
    @classmethod
    def check_config(cls, kernel: Kernel, config: AgentConfig) -> None:
        """Refuse a spawn that could only fail later (raise AgentError with one line); called before
        anything is written."""

    async def on_start(self) -> None:
        """Called once the agent is subscribed and its state loaded."""

    async def on_message(self, delivery: Delivery) -> bool | None:
        """React to one message pushed to one of this agent's threads. Return False for a message passed
        over on purpose (not this agent's turn): it is marked seen, and neither ends nor extends a run of
        failures."""

    async def greet(self, channel: str, person: str) -> None:
        """Open a new conversation with `person` on `channel` (a persona says its card's first message)."""

    async def hooks_say(self, delivery: Delivery) -> bool | None:
        """What the SHOULD_ANSWER hooks (a scene's turn-taking floor) say about answering `delivery`:
        the first opinion wins; None when no hook has one. Agent types that take turns ask it first."""
        return await self.kernel.hooks.first(SHOULD_ANSWER, self, delivery)

    def state_dict(self) -> dict[str, Any]:
        """The agent's mutable state, JSON-able."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""

    # -- services --------------------------------------------------------------------------------
    def answer_channel(self, delivery: Delivery) -> str | None:
        """Where to answer a delivery: the channel of the thread it came through. That is the message's own,
        except in a fork, whose threads hold its parent's earlier lines (said on the parent's channel) and
        answer on the fork's (tobio/branching)."""
        for subscription in self.kernel.transport.subscriptions_of(self.id):
            if subscription.thread_id == delivery.thread_id:
                return subscription.channel
        return delivery.message.channel

    async def say(self, channel: str, content: str, *, role: str = "assistant", metadata: dict[str, Any] | None = None) -> Message:
        """Post to a channel as this agent; returns once the message is durable and delivered.

        Said while handling a message, it is the reply: it names that message (`reply_to`) and commits
        together with the handled mark and the agent's state as they are now.
        """
        transport = self.kernel.transport
        delivery = _handling.get()
        if delivery is None or delivery is not self.current:
            return await transport.post(channel, content, sender=self, role=role, metadata=metadata)
        writes, sets = self.kernel.agents.handling_record(self, delivery)
        return await transport.post(channel, content, sender=self, role=role, metadata=metadata,
                                    reply_to=delivery.message.id, writes=writes, sets=sets)

    async def stream(
        self, channel: str, pieces: AsyncIterator[str], *, metadata: dict[str, Any] | None = None,
        finish: Callable[[str], str] | None = None,
    ) -> Message:
        """Stream text to the channel's listeners as it is produced, then post the whole message
        (passed through `finish`, e.g. to trim a reply cut off mid-sentence)."""
        text, stream_id = await self.relay(channel, pieces)
        return await self.say(channel, finish(text) if finish else text, metadata={**(metadata or {}), "stream_id": stream_id})

    async def relay(self, channel: str, pieces: AsyncIterator[str]) -> tuple[str, str]:
        """Stream text to the channel's listeners without posting it; returns (the whole text, the stream
        id to put in the posted message's metadata). For agents that change state between the two."""
        stream_id = f"{self.name}-{uuid.uuid4().hex[:8]}"
        parts: list[str] = []
        transport = self.kernel.transport
        try:
            async for piece in pieces:
                parts.append(piece)
                transport.stream(channel, Delta(channel, self.name, stream_id, piece))
        finally:
            transport.stream(channel, Delta(channel, self.name, stream_id, "", done=True))
        return "".join(parts), stream_id

    def deliver(self, delivery: Delivery) -> None:
        """Put one durable push in the inbox."""
        self.delivered += 1
        self.inbox.put_nowait(delivery)

    def deliver_many(self, deliveries: list[Delivery]) -> None:
        """Called by the transport with this agent's share of a batch of durable pushes, in order."""
        self.delivered += len(deliveries)
        self.inbox.put_many(deliveries)

    # -- lifecycle (kernel) ----------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        self._resumed.clear()
        self.status = "paused"

    def resume(self) -> None:
        self._resumed.set()
        self.status = "running"

    async def run(self) -> None:
        """The agent's task: read the inbox, one message at a time, marking each handled with its state.

        Cancelled mid-message (kernel stop, kill), the message stays unhandled and a restart handles it
        again; a failure is marked handled like a success (logged, and its run recorded as failed), so
        one bad message is not retried forever.
        """
        await self.on_start()
        await self.kernel.agents.save_state(self)
        agents = self.kernel.agents
        while True:
            delivery = await self.inbox.get()
            await self._resumed.wait()
            self.current = delivery
            token = _handling.set(delivery)
            try:
                outcome = await self.on_message(delivery)
                self.handled += 1
                if outcome is not False:  # a message passed over says nothing about whether the agent works
                    self.failures = 0
            except asyncio.CancelledError:
                self.current = None
                raise
            except Exception as exc:  # one bad message must not kill the agent
                self.failures += 1
                log.error("agent %s failed on message %s (%d in a row): %s", self.name, delivery.message.id, self.failures, exc)
                if self.failures >= self.config.max_failures:
                    log.error("agent %s paused after %d failures in a row; `agent resume %s` when fixed",
                              self.name, self.failures, self.name)
                    await agents.pause(self.name)
            finally:
                _handling.reset(token)
            self.current = None
            # Nobody waits on the mark: lost in a crash, it is lost together with the state it carries,
            # and the message is handled again (the reply, if any, already carried the mark).
            writes, sets = agents.handling_record(self, delivery)
            if writes or sets:
                self.kernel.writer.queue(*writes, sets=sets)
            if self.handled % YIELD_EVERY == 0 and not self.inbox.empty():
                await asyncio.sleep(0)  # a backlog handled without awaiting would hold the loop (and every other agent)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.status})>"
