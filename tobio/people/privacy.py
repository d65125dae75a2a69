"""Privacy between people: what someone said in a private channel (`dm.…`) is not recalled to anyone else.

Memory retrieves from everything pushed to the agent, across all its threads; it now skips other
private conversations' *messages* itself, but a summary item carries no channel, so the summary of
Ada's private thread could still be recalled when Ben talks to the agent. This guard runs after
memory's hook and drops recalled memories whose message or summarised thread belongs to another
private channel, keeping the promise the per-person block makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.tables import MessageRow, SummaryRow, ThreadRow

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.persona.prompt import Prompt

MEMORY_PREFIX = "Memory ("


def is_private(channel: str | None) -> bool:
    return bool(channel) and str(channel).startswith("dm.")


def _channels(conn: Connection, messages: list[int], summaries: list[int]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    if messages:
        for mid, channel in conn.execute(sa.select(MessageRow.c.id, MessageRow.c.channel).where(MessageRow.c.id.in_(messages))):
            out[f"message:{mid}"] = channel
    if summaries:
        query = sa.select(SummaryRow.c.id, ThreadRow.c.channel).join(ThreadRow, ThreadRow.c.id == SummaryRow.c.thread_id)
        for sid, channel in conn.execute(query.where(SummaryRow.c.id.in_(summaries))):
            out[f"summary:{sid}"] = channel
    return out


def make_guard(kernel: Kernel) -> Any:
    """A `last` prompt hook, registered after memory's, that removes other people's private memories."""

    async def privacy_guard(prompt: Prompt) -> None:
        notes = prompt.notes.get("memory")
        if not isinstance(notes, dict) or prompt.incoming is None:
            return
        kept = list(notes.get("memories", []))
        if not kept:
            return
        here = prompt.incoming.channel
        messages = [int(k.split(":")[1]) for k in kept if k.startswith("message:")]
        summaries = [int(k.split(":")[1]) for k in kept if k.startswith("summary:")]
        where = await kernel.db.call(_channels, messages, summaries)
        drop = {key for key in kept if is_private(where.get(key)) and where.get(key) != here}
        if not drop:
            return
        # Memory's lines are either one injection next to the newest message (one line per memory) or
        # system lines; either way they are in `kept` order. Anything else: leave the prompt alone.
        for injection in prompt.injections:
            lines = injection.content.split("\n")
            if len(lines) == len(kept) and all(line.startswith(MEMORY_PREFIX) for line in lines):
                injection.content = "\n".join(line for line, key in zip(lines, kept) if key not in drop)
                break
        else:
            positions = [i for i, text in enumerate(prompt.system_extra) if text.startswith(MEMORY_PREFIX)]
            if len(positions) != len(kept):
                return
            for pos, key in sorted(zip(positions, kept), reverse=True):
                if key in drop:
                    del prompt.system_extra[pos]
        notes["memories"] = [k for k in kept if k not in drop]
        prompt.notes["people_privacy"] = {"dropped": len(drop)}

    return privacy_guard
