"""Agents running kernel commands on their own plumbing (`mod ls`, `emotion show me`, `sql …`).

With providers that support Chat Completions `tools`, the agent gets one tool, `run_command`. For
models without tool support (the embedded one) the protocol is text: a reply that is a single line
`/cmd <command>` runs it, the output comes back as the next user message, and the model answers.
Only commands in the agent's `commands` whitelist run; anything else is refused and logged. Every
call, allowed or not, is recorded as a step of the run that asked for it.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from tobio.errors import TobioError
from tobio.models.module import runs_of
from tobio.principal import AgentPrincipal

if TYPE_CHECKING:
    from tobio.models.runs import Run
    from tobio.persona.agent import PersonaAgent

log = logging.getLogger(__name__)
TEXT_CALL = re.compile(r"^\s*/cmd\s+(.+?)\s*$", re.DOTALL)
MAX_OUTPUT = 2000


def tool_definition(allowed: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "run_command",
            "description": f"Run a Tobio command about yourself and your world. Allowed: {', '.join(allowed)}. "
                           "Write `me` for your own name.",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
        },
    }


def text_protocol(allowed: list[str]) -> str:
    return (f"You can look at your own plumbing with these commands: {', '.join(allowed)}. To run one, reply with "
            "exactly one line `/cmd <command>` (write `me` for your own name); you will get its output and then answer.")


def requested_command(run: Run) -> tuple[str, str | None] | None:
    """(command, tool_call_id) if the run asked for one, by tool call or by the text protocol."""
    for call in run.tool_calls:
        if call.get("name") == "run_command":
            try:
                return str(json.loads(call.get("arguments") or "{}")["command"]), call.get("id")
            except (ValueError, KeyError, TypeError):
                return str(call.get("arguments")), call.get("id")
    match = TEXT_CALL.match(run.text)
    return (match.group(1), None) if match and "\n" not in match.group(1) else None


async def execute(agent: PersonaAgent, command: str, run: Run, trigger_id: int | None = None) -> str:
    """Run `command` as the agent (whitelist enforced by the kernel), record it as a step of the run and
    of the message that triggered it, and return its output."""
    line = re.sub(r"(?<!\S)me(?!\S)", agent.name, command)
    try:
        result = await agent.kernel.execute(line, caller=AgentPrincipal(agent))
        output = result.to_plain() or "(no output)"
        outcome: dict[str, Any] = {"ok": True, "output": output[:MAX_OUTPUT]}
    except TobioError as exc:
        output = f"error: {exc}"
        outcome = {"ok": False, "error": str(exc)}
    await runs_of(agent.kernel).record_step(run.id, agent.id, "command", line.split()[0] if line.split() else "?",
                                        {"command": line}, outcome, message_id=trigger_id)
    if len(output) > MAX_OUTPUT:
        output = output[:MAX_OUTPUT] + "\n(output cut)"
    return output
