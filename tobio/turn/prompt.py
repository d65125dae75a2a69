"""The Prompt of one turn: what becomes the model's messages, edited in place by the PROMPT steps.

Memory replaces the recent history with a budgeted one and adds retrieved memories; emotion adds a
mood line and adjusts sampling; lore adds World Info; people adds notes on the person answered. Each
step is `async def step(prompt: Prompt) -> None`; they run by their `order` (tobio/hooks.py).

Where text goes decides what a provider can cache: `system_before`/`system_extra` change the system
prompt (keep them stable), `injections` sit at a depth counted from the newest message (per-turn text
such as triggered lore, placement.py), and the card's post-history instructions come last. Card text
goes through SillyTavern's macros (`{{user}}` is whoever the agent answers) when the messages are built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tobio.messages import Message
from tobio.turn.character import speaking_name
from tobio.turn.macros import MacroEnv, apply_macros  # leaf module of text macros (no persona imports)
from tobio.turn.placement import NEXT_TO_NEWEST, Injection, inject

if TYPE_CHECKING:
    from tobio.turn.agent import TurnAgent

SUMMARY_PREFIX = "Earlier in this conversation: "


@dataclass
class Prompt:
    """Everything that becomes the model's messages for one reply."""

    agent: TurnAgent
    thread_id: int
    incoming: Message | None
    summary: str | None = None
    history: list[Message] = field(default_factory=list)
    system_extra: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # what steps did, for `agent prompt`
    system_before: list[str] = field(default_factory=list)  # above the persona's own text
    examples_before: list[str] = field(default_factory=list)  # system messages above the example dialogue
    examples_after: list[str] = field(default_factory=list)  # and below it
    injections: list[Injection] = field(default_factory=list)

    def user_name(self) -> str:
        """Whom the agent answers: the sender of the incoming message, else the last other speaker."""
        me = self.agent.name
        if self.incoming is not None and self.incoming.sender and self.incoming.sender != me:
            return self.incoming.sender
        for message in reversed(self.history):
            if message.sender and message.sender != me:
                return message.sender
        return "User"

    def _reminder(self, env: MacroEnv) -> Injection:
        """Who the agent is, once more right above the newest message: under a long history the small
        model loses its name (bench/person.py on SmolLM2-135M: self 0.4 -> 0.8, score 0.66 -> 0.71).
        One sentence, so the part re-read every turn stays short."""
        persona = self.agent.persona
        text = f"You are {persona.name}. {_first_sentence(persona.description)}".strip()
        return Injection(NEXT_TO_NEWEST, "system", apply_macros(text, env), instruction=True)

    def macro_env(self) -> MacroEnv:
        """What `{{char}}`, `{{user}}`, `{{group}}` … stand for in this prompt; `{{pick}}` is stable per thread."""
        speakers = {m.sender for m in self.history if m.sender}
        agents = self.agent.kernel.agents.live
        cast = sorted(s for s in speakers | {self.agent.name} if getattr(agents.get(s), "type_name", "user") != "user")
        return MacroEnv(char=speaking_name(self.agent.persona), user=self.user_name(),
                        group=", ".join(cast) if len(cast) > 1 else "",
                        seed=f"thread:{self.thread_id}", values={"persona": "", "original": ""})

    def filler(self) -> Callable[[str], str]:
        """What fills this prompt's macros into a text (lore entries); the values are taken once."""
        env = self.macro_env()
        return lambda text: apply_macros(text, env)

    def messages(self) -> list[dict[str, Any]]:
        """Chat Completions messages: system, example dialogue, the history in chat roles, injections at
        their depth, then the card's post-history instructions."""
        # Stable first, volatile last, so a model's KV cache (or a server's prefix cache) reuses the prompt:
        # persona and examples never change between turns, the summary only when memory rewrites it, and
        # the history only grows; per-turn text goes in as injections next to the newest message.
        env = self.macro_env()
        head = self._head(env, self.summary)
        out = inject(head + self._history(self.history), len(head), [*self.injections, self._reminder(env)])
        closing = self.agent.persona.post_history(env)
        if closing:
            out.append({"role": "system", "content": closing})
        return out

    def instructions(self) -> list[str]:
        """What this prompt tells the agent to be or do, which it must not say back (echo.py): the
        reminder, instruction injections (the mood line) and the card's post-history instructions."""
        env = self.macro_env()
        texts = [item.content for item in self.injections if item.instruction]
        closing = self.agent.persona.post_history(env)
        return [*texts, self._reminder(env).content, *([closing] if closing else [])]

    def next_opening(self, history: list[Message], summary: str | None = None) -> list[dict[str, Any]]:
        """How the next turn's prompt will begin: this prompt's head (with `summary` instead of its own, if
        given) and `history` (this prompt's, plus the reply), without this turn's injections and closing, which
        the next turn puts next to its own newest message. What an agent prefills (Model.prefill)."""
        env = self.macro_env()
        head = self._head(env, self.summary if summary is None else summary)
        return [*head, *self._history(history)]

    def _head(self, env: MacroEnv, summary: str | None) -> list[dict[str, Any]]:
        """System prompt, example dialogue and summary: what stays the same from turn to turn."""
        persona = self.agent.persona
        out: list[dict[str, Any]] = [{"role": "system", "content": persona.system_prompt(
            self.system_extra, env=env, before=self.system_before)}]
        out += [{"role": "system", "content": text} for text in self.examples_before]
        out += persona.example_messages(env)
        out += [{"role": "system", "content": text} for text in self.examples_after]
        if summary:
            out.append({"role": "system", "content": SUMMARY_PREFIX + summary})
        return out

    def _history(self, history: list[Message]) -> list[dict[str, Any]]:
        """Messages in chat roles: the agent's own lines as the assistant's, the rest as the user's (named
        when several others speak)."""
        others = {m.sender for m in history if m.sender != self.agent.name}
        named = len(others) > 1  # several speakers: say who said what
        out: list[dict[str, Any]] = []
        for message in history:
            if message.sender == self.agent.name:
                out.append({"role": "assistant", "content": message.content})
            else:
                who = message.sender or "Narrator"
                out.append({"role": "user", "content": f"{who}: {message.content}" if named else message.content})
        return out


def _first_sentence(text: str, limit: int = 200) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + "…"
