"""The memory service: indexes what is said as it becomes durable, retrieves per agent, drives summaries."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tobio.db.migrations import utcnow
from tobio.hooks import EMBEDDED, MEMORY_SOURCE, RECALL_BIAS
from tobio.memory.config import MemoryConfig
from tobio.memory.tokens import TokenCounter
from tobio.messages import Message
from tobio.models.bundle import Model
from tobio.models.module import models_of

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.memory.index import AgentIndex  # numpy: loaded with the first index, not at start-up
    from tobio.memory.items import Hit, Item
    from tobio.memory.summarizer import Summarizer
    from tobio.swipes.service import Swiped

log = logging.getLogger(__name__)


class Memory:
    """Lives on the kernel's loop. The DB is the record; per-agent indexes are caches built from it."""

    def __init__(self, kernel: Kernel, config: MemoryConfig) -> None:
        self.kernel = kernel
        self.config = config
        self.tokens = TokenCounter()
        self.indexes: dict[int, AgentIndex] = {}
        self._loading: dict[int, asyncio.Task[AgentIndex]] = {}
        self.fixed_tokens: dict[int, int] = {}  # agent id -> last measured persona/system cost
        self._queue: list[Message] = []
        self._wake = asyncio.Event()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self.backfill_progress: dict[str, Any] = {}
        self.queries = 0
        self.query_ms = 0.0

    @functools.cached_property
    def summarizer(self) -> Summarizer:
        """Made by the first message or prompt that needs it: a start that runs no turn does not import it (nor
        what it imports: the store, its tables, the turn's events)."""
        from tobio.memory.summarizer import Summarizer

        return Summarizer(self)

    @staticmethod
    def of(kernel: Kernel) -> Memory:
        """The running memory service of `kernel` (for tools, notebooks and tests)."""
        from tobio.memory.module import MemoryModule  # the module imports this file

        module = kernel.modules.get(MemoryModule)
        if module is None or module.memory is None:
            raise LookupError("the memory module is not loaded (mod load memory)")
        return module.memory

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        info = self.kernel.tasks.spawn(self._indexer(), name="memory:indexer", kind="job", owner="memory")
        self._task = info.task

    async def stop(self) -> None:
        summarizer: Summarizer | None = self.__dict__.get("summarizer")  # not made for a stop
        tasks = [t for t in [self._task, *(summarizer.running.values() if summarizer else ())] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait until every durable message is indexed and no summary is being written (tests, benches)."""
        await self.kernel.writer.flush() if self.kernel.writer else None
        deadline = asyncio.get_running_loop().time() + timeout
        while self._queue or self._busy or self.summarizer.running:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("memory did not settle")
            await asyncio.sleep(0.005)

    # -- models ----------------------------------------------------------------------------------
    @property
    def embed_model(self) -> Model:
        return models_of(self.kernel).get_for(self.config.embed_model)

    def _live_agent(self, agent_id: int) -> Any:
        """The live agent with this id, if any (the registry is keyed by name; memory's records by id)."""
        return next((agent for agent in self.kernel.agents.live.values() if agent.id == agent_id), None)

    def chat_model_of(self, agent_id: int) -> Model | None:
        """The live agent's own chat model, if it has one (persona agents)."""
        agent = self._live_agent(agent_id)
        name = getattr(agent.config, "model", None) if agent is not None else None
        if isinstance(name, str) and name in models_of(self.kernel).models:
            return models_of(self.kernel).get(name)
        return None

    def tokenizer_for(self, agent_id: int) -> Model:
        """The agent's own chat model when it has one (its tokenizer is what the budget is about)."""
        return self.chat_model_of(agent_id) or models_of(self.kernel).get_for(self.config.tokenizer_model)

    def auto_summarize(self, agent_id: int) -> bool:
        """Summaries are written as threads grow only for agents whose prompts they keep small."""
        return self.config.summarize and (self.config.summarize_all_threads or self.chat_model_of(agent_id) is not None)

    def history_budget(self, agent_id: int) -> int:
        """Tokens left for the thread's own messages once persona, summary and memories are paid for."""
        c = self.config
        fixed = self.fixed_tokens.get(agent_id, c.budget_tokens // 8)
        return max(16, c.budget_tokens - c.reserve_tokens - fixed - c.summary_tokens - c.memory_tokens)

    # -- indexing --------------------------------------------------------------------------------
    def observe(self, message: Message) -> None:
        """Transport observer: queue, never block the post."""
        if self.config.index and message.content:
            self._queue.append(message)
            self._wake.set()

    async def _indexer(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._queue) < self.config.embed_batch and self.config.index_delay_ms:
                # Messages come one at a time; waiting a moment lets one transaction index several.
                await asyncio.sleep(self.config.index_delay_ms / 1000)
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self.config.embed_batch]
                del self._queue[: len(batch)]
                self._busy = True
                try:
                    await self.index_messages(batch)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("memory: indexing %d messages failed", len(batch))
                finally:
                    self._busy = False

    async def index_messages(self, messages: list[Message]) -> int:
        """Embed and store messages, extend loaded indexes, poke summaries of the threads they reached."""
        from tobio.memory import store
        from tobio.memory.items import Item
        from tobio.memory.text import importance, spoken

        messages = [m for m in messages if m.content]
        if not messages:
            return 0
        model = self.embed_model
        vectors = await model.embed([spoken(m.sender, m.content) for m in messages])  # as Item.text
        self.kernel.hooks.notify(EMBEDDED, messages, vectors)  # emotion appraises from these vectors
        first = self.kernel.db.next_ids("memory_items", len(messages))
        rows = [
            (first + i, "message", m.id, m.created_at, importance(m.content), model.name, list(map(float, v)))
            for i, (m, v) in enumerate(zip(messages, vectors))
        ]

        def write(conn: Any) -> tuple[list[tuple[Any, ...]], list[tuple[int, int, int]]]:
            fresh = store.insert_items(conn, self.kernel.db, rows)
            # Every receiver, not only those of fresh items: with several kernels on one database another one
            # may have stored a message's item first, and this kernel's agents that received it recall it too.
            return fresh, store.receivers(conn, [r[2] for r in rows])

        fresh, pushes = await self.kernel.db.call(write)
        by_id = {m.id: (m, v) for m, v in zip(messages, vectors)}
        by_row = {r[2]: r for r in rows}
        stored = {r[2] for r in fresh}
        live_here = {a.id for a in self.kernel.agents.live.values()} if self.kernel.cluster is not None else None
        for message_id, agent_id, thread_id in sorted(pushes):  # in id order: context links extend, not rebuild
            message, vec = by_id[message_id]
            index = self.indexes.get(agent_id)
            if index is not None:
                item = Item("message", message_id, message.created_at, by_row[message_id][4], message.sender, message.content,
                            message.channel)
                index.add(item, vec)  # (a no-op for an item it holds already)
            # With several kernels, the one running the agent keeps its thread under budget, whichever kernel
            # stored the message's item first (each kernel observes a message once: tobio/cluster/node.py).
            mine = message_id in stored if live_here is None else agent_id in live_here
            if mine and self.auto_summarize(agent_id):
                self.summarizer.note(thread_id, agent_id, await self.tokens.message(self.tokenizer_for(agent_id), message))
        return len(fresh)

    async def index_summary(self, summary_id: int, agent_id: int, content: str, when: datetime,
                            channel: str | None = None) -> None:
        """Embed a new summary so it can be retrieved later like a message."""
        from tobio.memory.items import Item
        from tobio.memory.text import importance

        await self.index_item(Item("summary", summary_id, when, importance(content), None, content, channel), agent_id)

    async def index_item(self, item: Item, agent_id: int) -> None:
        """Embed something the agent holds other than a message (a summary, a reflection) so recall finds
        it like a message. Kinds other modules add are loaded back through their MEMORY_SOURCE hook."""
        from tobio.memory import store

        if not self.config.index or not item.content:
            return
        model = self.embed_model
        vec = (await model.embed([item.text]))[0]
        row = (self.kernel.db.next_ids("memory_items"), item.kind, item.source_id, item.created_at, item.importance, model.name,
               list(map(float, vec)))
        await self.kernel.db.call(store.insert_items, self.kernel.db, [row])
        index = self.indexes.get(agent_id)
        if index is not None:
            index.add(item, vec)

    def drop_item(self, agent_id: int, kind: str, source_id: int) -> None:
        """Stop recalling an item another module superseded (its record stays in that module's tables)."""
        index = self.indexes.get(agent_id)
        if index is not None:
            index.forget(kind, source_id)

    async def swiped(self, change: Swiped) -> None:
        """A swipe moved messages out of (or back into) agents' histories: their indexes load again from
        the record, which holds only what was pushed to them now; so do the threads' histories."""
        for agent_id in change.agents:
            self.indexes.pop(agent_id, None)
        self.summarizer.tails.clear()  # the threads' histories as last read: read again (once) from the record

    # -- retrieval -------------------------------------------------------------------------------
    async def index_for(self, agent_id: int) -> AgentIndex:
        """The agent's index, loaded from the DB on first use; live indexing extends it from then on."""
        index = self.indexes.get(agent_id)
        if index is not None:
            return index
        loading = self._loading.get(agent_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(agent_id))
            self._loading[agent_id] = loading
        return await asyncio.shield(loading)

    async def _load(self, agent_id: int) -> AgentIndex:
        from tobio.memory import store
        from tobio.memory.index import AgentIndex

        index = AgentIndex(agent_id)
        self.indexes[agent_id] = index  # registered first: items indexed meanwhile are added (dedup by key)
        try:
            for item, vec in await self.kernel.db.call(store.agent_items, agent_id, self.embed_model.name):
                index.add(item, vec)
            # Other modules' kinds (people's reflections), read in the database thread; a failing source is
            # logged under its module's name and recall goes on without its kind (MEMORY_SOURCE isolates).
            hooks, model = self.kernel.hooks, self.embed_model.name
            for found in await self.kernel.db.call(lambda conn: hooks.collect(MEMORY_SOURCE, conn, agent_id, model)):
                for item, vec in found:
                    index.add(item, vec)
        except BaseException:
            self.indexes.pop(agent_id, None)
            raise
        finally:
            self._loading.pop(agent_id, None)
        return index

    async def search(self, agent_id: int, query: str, k: int | None = None, exclude: set[tuple[str, int]] | None = None) -> list[Hit]:
        """The agent's top-k memories for `query` (only what was pushed to it, minus what it forgot)."""
        began = asyncio.get_running_loop().time()
        index = self.indexes.get(agent_id) or await self.index_for(agent_id)
        if not len(index) or not query.strip():
            return []
        vec = (await self.embed_model.embed([query]))[0]
        hits = index.search(query, vec, self.config, self.config.k if k is None else k, exclude or set(),
                            bias=lambda matrix: sum(self.kernel.hooks.collect(RECALL_BIAS, agent_id, matrix)))
        self.queries += 1
        self.query_ms += (asyncio.get_running_loop().time() - began) * 1000
        return hits

    async def forget(self, agent_id: int, message_id: int, reason: str, by: str) -> int:
        """Record that the agent must not retrieve this message; returns the record's id."""
        from tobio.memory import store

        row = (self.kernel.db.next_ids("memory_forgotten"), agent_id, message_id, reason, by, utcnow())
        await self.kernel.db.call(store.forget, row)
        index = self.indexes.get(agent_id)
        if index is not None:
            index.forget("message", message_id)
        log.info("agent %s forgot message %s (%s) at %s's request", agent_id, message_id, reason or "no reason", by)
        return row[0]

    # -- backfill --------------------------------------------------------------------------------
    async def backfill(self, agent_id: int | None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Embed every message not yet embedded, then bring every thread under its summary budget."""
        from tobio.memory import store

        say = progress or (lambda _text: None)
        model = self.embed_model.name
        total = await self.kernel.db.call(store.count_unindexed, model, agent_id)
        state = self.backfill_progress = {"state": "embedding", "done": 0, "total": total, "summaries": 0}
        while True:
            batch = await self.kernel.db.call(store.unindexed_messages, model, agent_id, self.config.embed_batch * 4)
            if not batch:
                break
            for i in range(0, len(batch), self.config.embed_batch):
                state["done"] += await self.index_messages(batch[i : i + self.config.embed_batch])
            text = f"embedded {state['done']}/{total} messages"
            log.info("memory backfill: %s", text)
            say(text)
        if self.config.summarize:
            state["state"] = "summarising"
            for thread_id, _agent in await self.kernel.db.call(store.threads_of, agent_id):
                while await self.summarizer.step(thread_id) is not None:
                    state["summaries"] += 1
                say(f"thread {thread_id}: {state['summaries']} summaries written so far")
        state["state"] = "done"
        log.info("memory backfill done: %s", state)
        return state
