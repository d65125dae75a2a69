"""The scripted agent: replies from a list or from regex rules. For tests, demos and load.

This file is also the example of an agent type *and* of a module: `ScriptedModule` registers the type.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tobio.agents.base import Agent, AgentConfig
from tobio.hooks import AGENT_TYPE
from tobio.messages import Delivery
from tobio.modules import DatabaseModule, Module
from tobio.patterns import PatternError, check_pattern, compile_pattern, search

if TYPE_CHECKING:
    from tobio.kernel import Kernel


RULES_BUDGET_S = 0.05  # matching time for all rules against one message
RULE_TIMEOUT_S = 0.02  # a rule that needs longer than this once is never tried again
RULE_TEXT_CHARS = 64 * 1024  # characters of a message the rules look at


_FIELD = re.compile(r"\{\{|\}\}|\{(sender|text)\}")


def _fill(template: str, sender: str | None, text: str) -> str:
    """`{sender}` and `{text}` filled in (`{{`/`}}` are braces). Not `str.format`: a reply written by
    someone else must not reach attributes (`{text.__class__}`) or pad to gigabytes (`{text:>999999999}`)."""
    values = {"sender": sender or "", "text": text}
    return _FIELD.sub(lambda m: values[m.group(1)] if m.group(1) else m.group(0)[0], template)


class Rule(BaseModel):
    """Reply `reply` to messages matching the regex `match` (case-insensitive)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    match: str
    reply: str

    @field_validator("match")
    @classmethod
    def _bounded(cls, value: str) -> str:
        """Refused at spawn, in one line, when it is invalid or shaped to backtrack forever."""
        try:
            check_pattern(value, ignore_case=True)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        return value


class ScriptedConfig(AgentConfig):
    """A scripted agent replies from `rules` first, then cycles through `replies`."""

    type: Literal["scripted"] = "scripted"
    replies: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    mode: Literal["cycle", "once"] = "cycle"
    reply_to: list[str] | None = Field(None, description="only answer these senders (default: anyone)")
    ignore: list[str] = Field(default_factory=list, description="never answer these senders")
    max_replies: int | None = Field(None, ge=0, description="stop replying after this many")
    delay_s: float = Field(0.0, ge=0, description="pause before replying")
    stream: bool = Field(False, description="stream replies word by word to listeners")
    token_delay_s: float = Field(0.02, ge=0, description="pause between streamed words")
    greeting: str | None = Field(None, description="said once in each channel when first spawned")


class ScriptedAgent(Agent):
    """Deterministic: the n-th reply is replies[n % len]; `{sender}` and `{text}` are filled in."""

    type_name = "scripted"
    Config = ScriptedConfig
    config: ScriptedConfig

    def __init__(self, kernel: Kernel, config: AgentConfig, agent_id: int) -> None:
        super().__init__(kernel, config, agent_id)
        self.sent = 0
        self.greeted: list[str] = []

    def state_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "greeted": list(self.greeted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sent = int(state.get("sent", 0))
        self.greeted = list(state.get("greeted", []))

    async def on_start(self) -> None:
        if self.config.greeting:
            for channel in self.config.channels:
                if channel not in self.greeted:
                    await self.say(channel, self.config.greeting)
                    self.greeted.append(channel)

    def reply_for(self, text: str, sender: str | None) -> str | None:
        """The reply this agent would give, or None if it stays silent."""
        cfg = self.config
        if cfg.reply_to is not None and sender not in cfg.reply_to:
            return None
        if sender in cfg.ignore:
            return None
        if cfg.max_replies is not None and self.sent >= cfg.max_replies:
            return None
        if cfg.rules:  # every rule's search shares one budget and sees a bounded part of the text
            seen, deadline = text[:RULE_TEXT_CHARS], time.monotonic() + RULES_BUDGET_S
            for rule in cfg.rules:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if search(compile_pattern(rule.match, ignore_case=True), seen, min(left, RULE_TIMEOUT_S),
                          poison=left >= RULE_TIMEOUT_S):
                    return _fill(rule.reply, sender, text)
        if not cfg.replies or (cfg.mode == "once" and self.sent >= len(cfg.replies)):
            return None
        return _fill(cfg.replies[self.sent % len(cfg.replies)], sender, text)

    async def on_message(self, delivery: Delivery) -> None:
        message = delivery.message
        if self.config.rules:  # regex searches release the GIL: the kernel's loop goes on meanwhile
            reply = await asyncio.to_thread(self.reply_for, message.content, message.sender)
        else:
            reply = self.reply_for(message.content, message.sender)
        channel = self.answer_channel(delivery)
        if reply is None or channel is None:
            return
        if self.config.delay_s:
            await asyncio.sleep(self.config.delay_s)
        self.sent += 1
        if self.config.stream:
            await self.stream(channel, self._words(reply))
        else:
            await self.say(channel, reply)

    async def _words(self, text: str) -> AsyncIterator[str]:
        for i, word in enumerate(re.findall(r"\S+\s*", text)):
            if i and self.config.token_delay_s:
                await asyncio.sleep(self.config.token_delay_s)
            yield word


class ScriptedModule(Module):
    """Registers the `scripted` agent type."""

    name = "scripted"
    description = "Scripted agents: deterministic replies from lists and regex rules."
    dependencies = (DatabaseModule,)

    async def module_init(self, kernel: Kernel) -> None:
        kernel.hooks.add(AGENT_TYPE, ScriptedAgent)
