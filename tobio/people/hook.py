"""The prompt hook: what the agent knows about whoever it is answering, placed next to the newest
message (an injection), so the system prompt above stays the same for every person and turn. And the
reply filter that checks a reply against the same record (check.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.people.render import person_block
from tobio.turn.placement import Injection

if TYPE_CHECKING:
    from tobio.hooks import PromptStep, ReplyFilter
    from tobio.people.service import People
    from tobio.turn.prompt import Prompt
    from tobio.turn.reply import Reply


def make_hook(people: People, depth: int, sign: bool = False, used_to_turns: int = 20) -> PromptStep:
    """Build the hook bound to this service; `depth` counts messages up from the newest (0: after it)."""

    async def people_hook(prompt: Prompt) -> None:
        agent = prompt.agent
        person = prompt.incoming.sender if prompt.incoming is not None and prompt.incoming.sender else None
        if person is None or person == agent.name:
            return
        facts = people.known(agent.id, person)
        thoughts = people.reflections.get((agent.id, person), [])
        sender = agent.kernel.agents.live.get(person)
        is_user = sender is None or sender.type_name == "user"
        me = agent.persona.name
        was = people.recent_changes(agent, person, used_to_turns) if used_to_turns else {}
        text = person_block(me, person, facts, thoughts, is_user=is_user, sign=sign, was=was)
        if text:
            prompt.injections.append(Injection(depth, "system", text))
        prompt.notes["people"] = {"person": person, "facts": facts, "used_to": was, "reflections": len(thoughts), "depth": depth}

    return people_hook


def make_filter(people: People, used_to_turns: int) -> ReplyFilter:
    """The REPLY_FILTER bound to this service."""

    async def check_reply(reply: Reply) -> None:
        prompt = reply.prompt
        incoming = prompt.incoming
        agent = prompt.agent
        if incoming is None or not incoming.sender or incoming.sender == agent.name or not incoming.content:
            return
        from tobio.people.check import checked, self_checked  # ~2 ms of patterns: at the first reply, not at boot

        person = str(incoming.sender)
        facts = people.known(agent.id, person)
        was = people.recent_changes(agent, person, used_to_turns) if used_to_turns else {}
        wrong = {key: people.retracted_values(agent.id, person, key) for key in facts}
        fixed = checked(reply.text, incoming.content, agent.persona.name, facts.get("name"), facts, was, wrong)
        if fixed is None:
            fixed = self_checked(reply.text, incoming.content, agent.persona.description)
        if fixed is not None:
            reply.notes["people_check"] = {"was": reply.text}
            reply.text = fixed

    return check_reply
