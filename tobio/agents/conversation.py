"""Say something to an agent as a person and wait for its answer: the one exchange that notebooks'
`ask()`, benchmarks and tests all need."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tobio.errors import TobioError
from tobio.messages import Delivery, Message

if TYPE_CHECKING:
    from tobio.kernel import Kernel


async def exchange(kernel: Kernel, agent: str, text: str, *, user: str = "user", timeout: float = 300.0) -> Message:
    """Post `text` as `user` in the private channel `dm.USER.AGENT` and return the agent's reply message.
    Runs on the kernel's loop (`kernel.call(exchange(...))` from other threads)."""
    me, channel = await kernel.agents.open_dm(user, agent)
    replied: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    def on_delivery(delivery: Delivery) -> None:
        message = delivery.message
        if message.channel == channel and message.sender == agent and not replied.done():
            replied.set_result(message)

    stop = me.watch(on_delivery)  # type: ignore[attr-defined]  # open_dm returns the UserAgent
    try:
        await me.say(channel, text, role="user")
        return await asyncio.wait_for(replied, timeout)
    except asyncio.TimeoutError:
        raise TobioError(f"{agent} did not answer within {timeout:g} s (see `log tail`)") from None
    finally:
        stop()
