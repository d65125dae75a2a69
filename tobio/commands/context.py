"""What a command handler receives besides its arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tobio.principal import LOCAL_PERSON, Principal

if TYPE_CHECKING:
    from tobio.agents.base import Agent
    from tobio.kernel import Kernel


@dataclass
class Context:
    """The kernel, who is calling (a Principal: the person at a front end, or an agent), and a sink
    for streamed output."""

    kernel: Kernel
    caller: Principal = field(default=LOCAL_PERSON)
    emit_fn: Callable[[Any], None] | None = None

    @property
    def agent(self) -> Agent | None:
        """The agent calling, if an agent is (None for a person)."""
        return self.caller.agent

    @property
    def privileged(self) -> bool:
        return self.caller.privileged

    def sees_agent(self, name: str) -> bool:
        """Whether the caller's view includes agent `name` beyond its name and type (a person: everyone)."""
        return self.caller.privileged or name == self.caller.name

    def sees_channel(self, channel: str) -> bool:
        """Whether the caller is on `channel` (a person sees every channel)."""
        if self.caller.privileged:
            return True
        agent = self.caller.agent
        return agent is not None and any(s.channel == channel for s in self.kernel.transport.subscriptions_of(agent.id))

    def emit(self, item: Any) -> None:
        """Stream a piece of output (text chunk, progress) to the front end, if it listens."""
        if self.emit_fn is not None:
            self.emit_fn(item)
