"""`transcript import` / `transcript export`: SillyTavern chats in and out (tobio/persona/stchat.py does the
work, imported when a command runs: a start registers the commands without reading the chat code)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tobio.paths import slug

if TYPE_CHECKING:
    from tobio.kernel import Kernel


def register(kernel: Kernel) -> None:
    from tobio.commands import Arg, Context, Result

    group = kernel.commands.group("transcript", "SillyTavern chats: import a chat JSONL as history, export a thread. (`chat AGENT` talks.)")

    @group.command("import", Arg("file", help="a SillyTavern chat .jsonl (single or group)", complete="file"),
                   Arg("--channel", help="channel for the imported threads (default: st.NAME)"),
                   Arg("--user", help="agent name for the person in the chat (default: their name as a slug)"),
                   Arg("--as", nargs="*", default=None, help="map speakers to agents: NAME=AGENT ..."),
                   Arg("--backfill", flag=True, help="then embed and summarise it (memory), with progress"),
                   agents="people")
    async def import_(ctx: Context, file: str, channel: str | None, user: str | None, backfill: bool, **kw: Any) -> Result:
        """Import a chat as the subjective history of the agents named in it, at its own times."""
        from tobio.persona.stchat import import_chat, map_names, read_chat

        chat = await asyncio.to_thread(read_chat, file)  # a big file is parsed off the kernel's loop
        notes: list[str] = []
        names = map_names(chat, kw.get("as") or [], user, ctx.kernel, notes)
        title = (chat.header or {}).get("character_name") if chat.header else None
        channel = channel or f"st.{slug(str(title) if title and title != 'unused' else Path(file).stem, fallback='chat')}"
        done = await import_chat(ctx.kernel, chat, channel, names, Path(file).name)
        text = (f"imported {done['messages']} messages ({done['first']:%Y-%m-%d %H:%M} to {done['last']:%Y-%m-%d %H:%M}) "
                f"into {channel}: " + ", ".join(f"{n} thread {t}" for n, t in done["threads"].items()))
        text += "".join(f"\n{note}" for note in notes)
        if backfill:
            text += "\n" + await _backfill(ctx, list(done["agents"].values()))
        return Result(text=text, data={k: v for k, v in done.items() if k != "agents"})

    @group.command("export", Arg("thread", type=int, help="thread id (see `thread ls`)", complete="thread"),
                   Arg("file", help="where to write the .jsonl", complete="file"),
                   Arg("--force", flag=True, help="overwrite an existing file"),
                   agents="agents")
    async def export(ctx: Context, thread: int, file: str, force: bool) -> Result:
        """Write a thread as a SillyTavern chat JSONL (never over an existing file without --force)."""
        from tobio.confined import write_confined
        from tobio.persona.stchat import export_thread

        text = await export_thread(ctx.kernel, thread)
        target = write_confined(ctx.kernel, ctx.caller, file, text.encode("utf-8"), force=force)
        return Result(text=f"exported thread {thread} ({text.count(chr(10))} lines) to {target}")


async def _backfill(ctx: Any, agent_ids: list[int]) -> str:
    """memory's public backfill per agent, progress streamed to the front end."""
    from tobio.memory.module import MemoryModule

    module = ctx.kernel.modules.get(MemoryModule)
    memory = module.memory if module is not None else None
    if memory is None:
        return "memory is not loaded: no backfill (mod load memory, then memory backfill)"
    total = {"done": 0, "summaries": 0}
    for i, agent_id in enumerate(agent_ids, 1):
        state = await memory.backfill(agent_id, lambda line, i=i: ctx.emit(f"[{i}/{len(agent_ids)}] {line}\n"))
        total["done"] += state.get("done", 0)
        total["summaries"] += state.get("summaries", 0)
    return f"backfill: {total['done']} messages embedded, {total['summaries']} summaries written"
