"""Talking to an agent from a notebook cell: post as the notebook's UserAgent, wait for the reply."""

from __future__ import annotations

import asyncio

from tobio.errors import TobioError
from tobio.jupyter.session import get_kernel
from tobio.messages import Delivery


def ask(agent: str, text: str, *, user: str = "user", timeout: float = 300.0) -> str:
    """Say `text` to `agent` in a private channel (`dm.USER.AGENT`) and return its reply."""
    kernel = get_kernel()

    async def exchange() -> str:
        me, channel = await kernel.agents.open_dm(user, agent)
        replied: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_delivery(delivery: Delivery) -> None:
            message = delivery.message
            if message.channel == channel and message.sender == agent and not replied.done():
                replied.set_result(message.content)

        stop = me.watch(on_delivery)  # type: ignore[attr-defined]
        try:
            await me.say(channel, text, role="user")
            return await asyncio.wait_for(replied, timeout)
        except asyncio.TimeoutError:
            raise TobioError(f"{agent} did not answer within {timeout:g} s (see `log tail`)") from None
        finally:
            stop()

    return kernel.call(exchange())
