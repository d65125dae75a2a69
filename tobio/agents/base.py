"""Agents are code + config + state.

- code: a subclass of `Agent` (its `on_message` is the behaviour);
- config: an immutable pydantic model (`Config`) validated from a YAML file;
- state: whatever `state_dict()` returns (JSON-able). The kernel saves it after each message when it
  changed, moving the previous one to the `state` table, and `load_state_dict` brings it back on restart.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from tobio.agents.inbox import Inbox
from tobio.config.schema import Frozen, Name
from tobio.messages import Delivery, Delta, Message

if TYPE_CHECKING:
    from tobio.kernel import Kernel

log = logging.getLogger(__name__)


class AgentConfig(Frozen):
    """Fields every agent file has; agent types subclass this for their own."""

    name: Name
    type: str
    description: str = ""
    channels: list[Name] = Field(default_factory=list, description="channels to subscribe to at spawn")
    commands: list[str] = Field(default_factory=list, description="command prefixes this agent may run")
    max_failures: int = Field(5, ge=1, description="pause the agent after this many failures in a row")
    sql_all_rows: bool = Field(False, description="let this agent's `sql` see every agent's rows (read-only still)")


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
        self._resumed = asyncio.Event()
        self._resumed.set()

    # -- behaviour (override) --------------------------------------------------------------------
    async def on_start(self) -> None:
        """Called once the agent is subscribed and its state loaded."""

    async def on_message(self, delivery: Delivery) -> None:
        """React to one message pushed to one of this agent's threads."""

    def state_dict(self) -> dict[str, Any]:
        """The agent's mutable state, JSON-able."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""

    # -- services --------------------------------------------------------------------------------
    async def say(self, channel: str, content: str, *, role: str = "assistant", metadata: dict[str, Any] | None = None) -> Message:
        """Post to a channel as this agent; returns once the message is durable and delivered."""
        return await self.kernel.transport.post(channel, content, sender=self, role=role, metadata=metadata)

    async def stream(
        self, channel: str, pieces: AsyncIterator[str], *, metadata: dict[str, Any] | None = None,
        finish: Callable[[str], str] | None = None,
    ) -> Message:
        """Stream text to the channel's listeners as it is produced, then post the whole message
        (passed through `finish`, e.g. to trim a reply cut off mid-sentence)."""
        stream_id = f"{self.name}-{uuid.uuid4().hex[:8]}"
        parts: list[str] = []
        transport = self.kernel.transport
        try:
            async for piece in pieces:
                parts.append(piece)
                transport.stream(channel, Delta(channel, self.name, stream_id, piece))
        finally:
            transport.stream(channel, Delta(channel, self.name, stream_id, "", done=True))
        text = "".join(parts)
        return await self.say(channel, finish(text) if finish else text, metadata={**(metadata or {}), "stream_id": stream_id})

    def deliver(self, delivery: Delivery) -> None:
        """Called by the transport after the push is durable."""
        self.delivered += 1
        self.inbox.put_nowait(delivery)

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
        """The agent's task: read the inbox, one message at a time, saving state after each."""
        await self.on_start()
        await self.kernel.agents.save_state(self)
        while True:
            delivery = await self.inbox.get()
            await self._resumed.wait()
            try:
                await self.on_message(delivery)
                self.handled += 1
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad message must not kill the agent
                self.failures += 1
                log.error("agent %s failed on message %s (%d in a row): %s", self.name, delivery.message.id, self.failures, exc)
                if self.failures >= self.config.max_failures:
                    log.error("agent %s paused after %d failures in a row; `agent resume %s` when fixed",
                              self.name, self.failures, self.name)
                    await self.kernel.agents.pause(self.name)
            await self.kernel.agents.save_state(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.status})>"
