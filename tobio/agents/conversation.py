"""Say something to an agent as a person and wait for its answer: the one exchange that notebooks'
`ask()`, benchmarks and tests all need (a `tobio.conversation.Conversation` held for one line)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.conversation import Conversation, Response
from tobio.errors import TobioError
from tobio.messages import Message

if TYPE_CHECKING:
    from tobio.kernel import Kernel


async def exchange(kernel: Kernel, agent: str, text: str, *, user: str = "user", timeout: float = 300.0) -> Message:
    """Post `text` as `user` in the private channel `dm.USER.AGENT` and return the agent's reply message.
    Runs on the kernel's loop (`kernel.call(exchange(...))` from other threads). Cancelled, or out of
    time, it stops the agent's turn: its model run is cancelled rather than left generating."""
    async with Conversation(kernel, agent, user=user) as talk:
        response: Response | None = None
        try:
            response = await talk.prompt(text)
            reply = await response.wait(timeout)
        finally:
            if response is not None and not response.done:
                talk.stop()
        if reply.message is None:
            why = "was stopped before it posted its reply" if reply.state == "stopped" else "ended its turn without a reply"
            raise TobioError(f"{agent} {why} (see `log tail`)")
        return reply.message
