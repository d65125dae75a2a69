"""Recursive summaries: fold a thread's oldest unsummarised messages and its previous summary into a new one.

One background task per thread at a time (pokes while it runs are coalesced into one more pass), so
summaries chain: each checkpoint is after the previous one and every message is folded exactly once.
The span each summary covers is recorded in memory_summary_spans.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tobio.db.migrations import utcnow
from tobio.memory import store
from tobio.messages import Message

if TYPE_CHECKING:
    from tobio.memory.service import Memory

log = logging.getLogger(__name__)
READ_LIMIT = 5000  # messages read past the checkpoint per step; more than this is over budget anyway


@dataclass(frozen=True)
class NewSummary:
    """What one summarisation step wrote."""

    id: int
    thread_id: int
    first_message_id: int
    checkpoint: int
    messages: int
    content: str


class Summarizer:
    """Keeps each thread's unsummarised messages under the history budget."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self.running: dict[int, asyncio.Task[None]] = {}
        self._again: set[int] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self.estimate: dict[int, int] = {}  # thread -> unsummarised tokens, so most messages cost no DB read

    def note(self, thread_id: int, agent_id: int, tokens: int) -> None:
        """A message of `tokens` reached the thread: check it only if it may now be over budget."""
        estimate = self.estimate.get(thread_id)
        if estimate is not None:
            estimate += tokens + self.memory.config.message_overhead_tokens
            self.estimate[thread_id] = estimate
            if estimate <= self.memory.config.summarize_at * self.memory.history_budget(agent_id):
                return
        self.poke(thread_id)

    def poke(self, thread_id: int) -> None:
        """Check the thread soon, in the background (call on the kernel's loop)."""
        if not self.memory.config.summarize:
            return
        if thread_id in self.running:
            self._again.add(thread_id)
            return
        info = self.memory.kernel.tasks.spawn(self._run(thread_id), name=f"memory:summarize:{thread_id}", kind="job", owner="memory")
        self.running[thread_id] = info.task

    async def _run(self, thread_id: int) -> None:
        try:
            while True:
                self._again.discard(thread_id)
                while await self.step(thread_id) is not None:
                    pass
                if thread_id not in self._again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("summarising thread %s failed", thread_id)
        finally:
            self.running.pop(thread_id, None)

    async def step(self, thread_id: int, force: bool = False) -> NewSummary | None:
        """Write the next summary if the thread is over budget (or `force`); None if nothing to do."""
        lock = self._locks.setdefault(thread_id, asyncio.Lock())
        async with lock:
            memory = self.memory
            db = memory.kernel.db
            state, messages = await db.call(store.unsummarised, thread_id, READ_LIMIT)
            if state is None:
                return None
            agent_id, _checkpoint, previous = state
            if not messages or (len(messages) == 1 and not force):
                self.estimate.pop(thread_id, None)
                return None
            tokenizer = memory.tokenizer_for(agent_id)
            counts = [await memory.tokens.message(tokenizer, m) for m in messages]
            total = sum(counts) + memory.config.message_overhead_tokens * len(messages)
            threshold = memory.config.summarize_at * memory.history_budget(agent_id)
            if not force and total <= threshold and len(messages) < READ_LIMIT:
                self.estimate[thread_id] = total
                return None
            chunk = _chunk(messages, counts, memory, total, threshold, force)
            text = "\n".join(f"{m.sender or 'narrator'}: {m.content}" for m in chunk)
            prompt = (f"Summary so far: {previous}\n\nNew messages:\n{text}" if previous else f"Messages:\n{text}")
            model = memory.kernel.models.get_for(memory.config.summarize_model)
            content = await model.summarize(prompt)
            content = await memory.tokens.truncate(tokenizer, content, memory.config.summary_tokens)
            summary_id = db.next_ids("summaries")
            created = utcnow()
            last = chunk[-1]
            chunk_tokens = sum(counts[: len(chunk)])
            self.estimate[thread_id] = total - chunk_tokens - memory.config.message_overhead_tokens * len(chunk)
            await db.call(
                store.write_summary,
                (summary_id, thread_id, last.id, content, created),
                (summary_id, thread_id, chunk[0].id, last.id, len(chunk), chunk_tokens),
            )
            log.info("thread %s: summary %s folds %d messages (%d tokens) up to %s", thread_id, summary_id, len(chunk), chunk_tokens, last.id)
            await memory.index_summary(summary_id, agent_id, content, last.created_at)
            return NewSummary(summary_id, thread_id, chunk[0].id, last.id, len(chunk), content)


def _chunk(messages: list[Message], counts: list[int], memory: Memory, total: int, threshold: float, force: bool) -> list[Message]:
    """The oldest messages to fold: enough to leave (1 - chunk_share) of the threshold, capped, never the newest."""
    config = memory.config
    keep = threshold * (1 - config.chunk_share)
    target = min(total - keep, config.max_chunk_tokens)
    chunk: list[Message] = []
    size = 0
    limit = len(messages) if (force and len(messages) == 1) else len(messages) - 1
    for message, count in zip(messages[:limit], counts[:limit]):
        if chunk and size + count > target:
            break
        chunk.append(message)
        size += count + config.message_overhead_tokens
    return chunk

