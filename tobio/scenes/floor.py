"""Turn-taking: who holds the floor in a channel with several persona agents.

A Floor decides, once per message, which member answers it (round-robin, the member addressed by
name, or a model's choice), and stops agents talking among themselves after `max_agent_turns`
agent messages in a row until a person speaks. Every member asks the same decision (cached per
message), so exactly one answers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Literal

from tobio.messages import Message
from tobio.models.module import models_of

if TYPE_CHECKING:
    from tobio.kernel import Kernel

log = logging.getLogger(__name__)
Policy = Literal["round_robin", "addressed", "model"]


class Floor:
    """Turn-taking for one channel."""

    def __init__(self, kernel: Kernel, channel: str, members: list[str], policy: Policy = "addressed",
                 max_agent_turns: int = 4, model: str = "classify") -> None:
        self.kernel = kernel
        self.channel = channel
        self.members = list(members)
        self.policy = policy
        self.max_agent_turns = max_agent_turns
        self.model = model
        self.streak = 0  # agent messages since a person last spoke
        self.spoken = 0  # agent messages since the floor opened
        self._next = 0
        self._decisions: dict[int, asyncio.Future[str | None]] = {}

    def is_person(self, message: Message) -> bool:
        if message.sender is None:
            return True
        agent = self.kernel.agents.live.get(message.sender)
        return agent is None or agent.type_name == "user"

    async def decide(self, message: Message) -> str | None:
        """The member who answers `message`, or None (the cap is reached). Same answer for every caller."""
        future = self._decisions.get(message.id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._decisions[message.id] = future
            if len(self._decisions) > 256:
                for old in sorted(self._decisions)[:128]:
                    self._decisions.pop(old, None)
            try:
                future.set_result(await self._choose(message))
            except Exception as exc:  # a bad choice must not silence the channel
                log.warning("floor %s: could not choose a speaker (%s); round-robin instead", self.channel, exc)
                future.set_result(self._round_robin(message.sender))
        return await asyncio.shield(future)

    async def _choose(self, message: Message) -> str | None:
        if self.is_person(message):
            self.streak = 0
        else:
            self.streak += 1
            self.spoken += 1
            if self.streak >= self.max_agent_turns:
                return None
        candidates = [m for m in self.members if m != message.sender and m in self.kernel.agents.live]
        if not candidates:
            return None
        if self.policy in ("addressed", "model"):
            named = addressed(message.content, candidates)
            if named:
                return named
        if self.policy == "model":
            recent = f"{message.sender or 'someone'} said: {message.content}"
            choice = await models_of(self.kernel).get_for("classify").classify(
                recent, candidates, instruction="Who should speak next in this conversation?")
            return choice
        return self._round_robin(message.sender)

    def _round_robin(self, last: str | None) -> str | None:
        candidates = [m for m in self.members if m in self.kernel.agents.live]
        for _ in range(len(candidates)):
            name = candidates[self._next % len(candidates)]
            self._next += 1
            if name != last:
                return name
        return None


def addressed(text: str, names: list[str]) -> str | None:
    """The member a message speaks to by name ("Ada, what do you think?", "@ada"), if exactly one."""
    found = [n for n in names if re.search(rf"(?<![\w@])@?{re.escape(n)}\b", text, re.IGNORECASE)]
    return found[0] if len(found) == 1 else None
