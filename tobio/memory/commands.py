"""`memory search|summaries|summarize|forget|stats|backfill`: inspect and steer what agents remember.
(`memory people|facts|correct` belong to the people module, which registers them in this group.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.commands import Arg, Context, Result, table
from tobio.errors import CommandError

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.memory.service import Memory

# Each command imports the store (and its tables) when run: registering them at every start does not.


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


async def _agent_id(ctx: Context, name: str) -> int:
    from tobio.memory import store

    live = ctx.kernel.agents.live.get(name)
    if live is not None:
        return live.id
    found = await ctx.kernel.db.call(store.agent_id, name)
    if found is None:
        raise CommandError(f"no agent named '{name}' (see `agent ls`)")
    return found


def register(kernel: Kernel, memory: Memory) -> None:
    group = kernel.commands.group("memory", "What agents remember: summaries and long-term retrieval.")

    @group.command("search", Arg("agent", help="whose memories", complete="agent"), Arg("query", help="what to recall"),
                   Arg("-k", type=int, default=5, help="how many"), agents="agents")
    async def search(ctx: Context, agent: str, query: str, k: int) -> Result:
        """Retrieve an agent's most relevant memories (only what was pushed to its threads)."""
        await ctx.kernel.flush()
        await memory.settle()
        hits = await memory.search(await _agent_id(ctx, agent), query, k=k)
        rows = [(round(h.score, 3), round(h.relevance, 3), round(h.recency, 3), round(h.importance, 3), h.item.kind,
                 h.item.source_id, h.item.created_at, h.item.sender or "", _short(h.item.content)) for h in hits]
        return table(["score", "relevance", "recency", "importance", "kind", "id", "when", "sender", "content"], rows,
                     data=[dict(kind=h.item.kind, id=h.item.source_id, score=h.score, content=h.item.content) for h in hits])

    @group.command("summaries", Arg("agent", help="whose threads", complete="agent"), agents="agents")
    async def summaries(ctx: Context, agent: str) -> Result:
        """An agent's thread summaries, oldest first, with the messages each one folded in."""
        from tobio.memory import store

        rows = await ctx.kernel.db.call(store.summaries, await _agent_id(ctx, agent))
        return table(["thread", "id", "first", "checkpoint", "messages", "tokens", "created", "content"],
                     [(*r[:7], _short(r[7])) for r in rows])

    @group.command("summarize", Arg("thread", type=int, help="thread id", reach="thread"), agents="agents")
    async def summarize(ctx: Context, thread: int) -> Result:
        """Fold the thread's oldest unsummarised messages into a new summary now."""
        await ctx.kernel.flush()
        made = await memory.summarizer.step(thread, force=True)
        if made is None:
            raise CommandError(f"thread {thread}: nothing to summarise (no such thread, or no messages after its checkpoint)")
        return Result(text=made.content, note=f"summary {made.id}: messages {made.first_message_id}..{made.checkpoint} "
                      f"({made.messages}) of thread {thread}", data=made.__dict__)

    @group.command("forget", Arg("agent", help="who forgets", complete="agent"), Arg("message_id", type=int, help="message id"),
                   Arg("--reason", default="", help="recorded with the request"), agents="agents")
    async def forget(ctx: Context, agent: str, message_id: int, reason: str) -> Result:
        """Stop an agent retrieving a message, and retract the facts it learnt from it; recorded, never deleted."""
        from tobio.memory import store
        from tobio.people.commands import retract_from_message  # lazily: people depends on memory, not back

        agent_id = await _agent_id(ctx, agent)
        await ctx.kernel.flush()
        if not await ctx.kernel.db.call(store.was_pushed, agent_id, message_id):
            raise CommandError(f"message {message_id} was never pushed to {agent}")
        record = await memory.forget(agent_id, message_id, reason, ctx.caller.label)
        retracted = await retract_from_message(ctx.kernel, agent_id, message_id)
        note = f"retracted: {'; '.join(retracted)}" if retracted else None
        return Result(text=f"{agent} will no longer retrieve message {message_id} (record {record})", note=note,
                      data={"record": record, "retracted": retracted})

    @group.command("stats", agents="agents")  # counts over everyone, no content
    async def stats(ctx: Context) -> Result:
        """Counts of embedded items, summaries and forgotten messages; queue, cache and query time."""
        from tobio.memory import store

        rows = await ctx.kernel.db.call(store.stats)
        mean = memory.query_ms / memory.queries if memory.queries else 0.0
        rows += [("index queue", len(memory._queue)), ("summarising threads", len(memory.summarizer.running)),
                 ("agents cached", len(memory.indexes)), ("queries", memory.queries), ("ms per query", round(mean, 2)),
                 ("embed model", memory.embed_model.name), ("budget tokens", memory.config.budget_tokens)]
        if memory.backfill_progress:
            rows.append(("backfill", memory.backfill_progress))
        return table(["what", "value"], rows)

    @group.command("backfill", Arg("--agent", help="only this agent's history", complete="agent"),
                   Arg("--wait", flag=True, help="wait for it and stream progress"), agents="people")
    async def backfill(ctx: Context, agent: str | None, wait: bool) -> Result:
        """Embed and summarise existing history as a kernel task (progress in `memory stats` and the log)."""
        agent_id = await _agent_id(ctx, agent) if agent else None
        await ctx.kernel.flush()
        info = ctx.kernel.tasks.spawn(memory.backfill(agent_id, ctx.emit if wait else None), name="memory:backfill", kind="job", owner="memory")
        if not wait:
            return Result(text=f"backfill running as task {info.id} (see `memory stats`, `task ls`)")
        state = await info.task
        return Result(text=f"backfill done: {state['done']} messages embedded, {state['summaries']} summaries written", data=state)
