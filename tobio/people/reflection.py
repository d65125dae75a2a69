"""Reflection (Park et al. 2023): every N messages from someone, the agent writes a few short thoughts
about them and the conversation. They replace its previous thoughts about that person (versioned in
people_reflections, so replay shows what it believed at T) and appear in its per-person block. With
`reflections_in_memory` they also join its memory: indexed as `reflection` items in the channel they
came from, recall brings them back like messages (only in that conversation when it is private), and
a replaced batch is no longer recalled."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from tobio.messages import Message
from tobio.models.module import models_of

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.people.module import PeopleSettings
    from tobio.people.service import People

log = logging.getLogger(__name__)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
_SPEAKER = re.compile(r"^[\w .'-]{1,40}:\s")  # "Tobio: …", a transcript line


def parse_reflections(text: str, most: int, said: list[str] | None = None) -> list[str]:
    """Up to `most` one-line thoughts from a model's answer (bullets and numbering dropped).

    A line that is a transcript line ("Tobio: …") or copies a message of the conversation (`said`; the
    same test as a stale reply's, tobio/turn/freshness.py) is not a thought: a small model often
    echoes the conversation back, and the echo then sat in every prompt's per-person note, where the
    agent copied it again into its replies."""
    from tobio.turn.freshness import staleness  # with the first reflection: a start makes none

    out: list[str] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip().strip('"')
        words = line.split()
        if not 3 <= len(words) <= 30 or line.endswith(":") or line in out or _SPEAKER.match(line):
            continue
        if said and staleness(line, [], said).stale():
            continue
        out.append(line)
        if len(out) >= most:
            break
    return out


class Reflector:
    """Counts messages per (agent, person) and reflects every `settings.reflect_every` of them."""

    def __init__(self, kernel: Kernel, people: People, settings: PeopleSettings) -> None:
        self.kernel = kernel
        self.people = people
        self.settings = settings
        self.counts: dict[tuple[int, str], int] = {}
        self.running: set[tuple[int, str]] = set()
        self.written = 0
        self.memory = _memory(kernel) if settings.reflections_in_memory else None
        if self.memory is not None:  # reflections join the agent's memory: recall reads them back with its messages
            from tobio.hooks import MEMORY_SOURCE
            from tobio.people.store import REFLECTION, reflection_items

            kernel.hooks.add(MEMORY_SOURCE, reflection_items, key=REFLECTION)

    def on_message(self, agent: Any, person: str, message: Message) -> None:
        every = self.settings.reflect_every
        if every <= 0 or message.channel is None:
            return
        key = (agent.id, person)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] % every == 0 and key not in self.running:
            self.running.add(key)
            self.kernel.tasks.spawn(self._reflect(agent, person, message), name=f"people:reflect:{agent.name}", kind="job", owner="people")

    async def _reflect(self, agent: Any, person: str, message: Message) -> None:
        from tobio.db.history import thread_context  # with the first reflection: a start makes none

        try:
            sub = self.kernel.transport.subscription(agent.id, str(message.channel))
            if sub is None:
                return
            context = await self.kernel.db.call(thread_context, sub.thread_id, self.settings.reflect_every)
            name = self.people.known(agent.id, person).get("name", person)
            said = [m for m in context.messages if m.content]
            lines = "\n".join(f"{m.sender or 'narrator'}: {m.content}" for m in said)
            model = models_of(self.kernel).get(self.settings.reflect_model or getattr(agent.config, "model", "chat-default"))
            me = getattr(getattr(agent, "persona", None), "name", agent.name)
            prompt = [
                {"role": "system", "content": f"You are {me}. You think about your conversations in short notes."},
                {"role": "user", "content": f"Conversation with {name}:\n{lines}\n\nWrite {self.settings.reflections} short "
                                            f"thoughts about {name} and how you feel about them, one per line."},
            ]
            text = await model.chat(prompt, params={"max_tokens": 80, "temperature": 0.3, "seed": 7}, purpose="reflect")
            thoughts = parse_reflections(text, self.settings.reflections, [m.content for m in said])
            if thoughts:
                new, old = self.people.set_reflections(agent.id, person, thoughts, message.id)
                await self._remember(agent.id, person, thoughts, new, old, message)
                self.written += 1
        except Exception:  # a failed reflection must not disturb the conversation
            log.exception("people: reflection of %s about %s failed", agent.name, person)
        finally:
            self.running.discard((agent.id, person))

    async def _remember(self, agent_id: int, person: str, thoughts: list[str], new: list[int], old: list[int], message: Message) -> None:
        """Index the new thoughts as the agent's memories (kind `reflection`, in the channel they came
        from, so privacy holds); the batch they replace is no longer recalled."""
        if self.memory is None:
            return
        from tobio.memory.items import Item
        from tobio.memory.text import importance
        from tobio.people.store import REFLECTION

        for reflection_id in old:
            self.memory.drop_item(agent_id, REFLECTION, reflection_id)
        for reflection_id, thought in zip(new, thoughts):
            item = Item(REFLECTION, reflection_id, message.created_at, importance(thought), person, thought, message.channel)
            await self.memory.index_item(item, agent_id)

    def busy(self) -> bool:
        return bool(self.running)


def _memory(kernel: Kernel) -> Any:
    from tobio.memory.service import Memory

    try:
        return Memory.of(kernel)
    except LookupError:
        return None
