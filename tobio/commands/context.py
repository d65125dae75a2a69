"""What a command handler receives besides its arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tobio.agents.base import Agent
    from tobio.kernel import Kernel


@dataclass
class Context:
    """The kernel, who is calling (`user` or an agent's name), and a sink for streamed output."""

    kernel: Kernel
    caller: str = "user"
    agent: Agent | None = None
    emit_fn: Callable[[Any], None] | None = None

    def emit(self, item: Any) -> None:
        """Stream a piece of output (text chunk, progress) to the front end, if it listens."""
        if self.emit_fn is not None:
            self.emit_fn(item)
