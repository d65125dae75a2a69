"""The person at a front end (shell, notebook, web page) as a first-class agent with its own threads.

It never answers by itself: what is pushed to it is handed to the front end's callbacks, and what
the person types is posted with `say`, so their view is reconstructed like anyone else's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tobio.agents.base import Agent, AgentConfig
from tobio.messages import Delivery


class UserConfig(AgentConfig):
    """A human participant; `type: user`."""

    type: str = "user"


class UserAgent(Agent):
    """Deliveries go to whoever is watching (`watch`), not to a model."""

    type_name = "user"
    Config = UserConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watchers: set[Callable[[Delivery], None]] = set()

    def watch(self, callback: Callable[[Delivery], None]) -> Callable[[], None]:
        """Call `callback` (on the kernel's loop) for each message pushed to this user."""
        self._watchers.add(callback)
        return lambda: self._watchers.discard(callback)

    async def on_message(self, delivery: Delivery) -> None:
        for callback in tuple(self._watchers):
            callback(delivery)
