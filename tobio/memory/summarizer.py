"""Recursive summaries: fold a thread's oldest unsummarised messages and its previous summary into a new one.

One background task per thread at a time (pokes while it runs are coalesced into one more pass), so
summaries chain: each checkpoint is after the previous one and every message is folded exactly once.
The span each summary covers is recorded in memory_summary_spans.

The summarizer is the only writer of summaries, so it also keeps each thread's `Tail`: the latest
summary and the messages after its checkpoint, as far as they were read. The prompt hook and the next
step extend a tail with what is new instead of reading the whole unsummarised history again, so a
turn's reads do not grow with the thread. A thread's `generation` moves on whenever a summary write is
issued, and a tail is trusted only in the generation it was read in: the DB thread runs calls in the
order they are issued, so a read issued before a write sees the state before it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from tobio.db.history import thread_messages
from tobio.db.migrations import utcnow
from tobio.memory import store
from tobio.messages import Message
from tobio.models.module import models_of
from tobio.turn.events import SummaryWritten, publish

if TYPE_CHECKING:
    from tobio.memory.service import Memory

log = logging.getLogger(__name__)
READ_LIMIT = 5000  # messages read past the checkpoint per step; more than this is over budget anyway
MAX_TAILS = 256  # threads whose tails are kept (least recently used dropped; a dropped one is read again)


@dataclass(frozen=True)
class Tail:
    """A thread as read in one `generation`: its latest summary, and the messages pushed to it after
    the summary's `checkpoint` up to message id `upto`, oldest first.

    Messages are committed in id order (one allocator, one group-commit queue), so every push to the
    thread with an id up to `upto` was already visible to the read. When `complete`, `messages` holds
    all of them; otherwise only the newest (max_history_messages).
    """

    generation: int
    summary: str | None
    checkpoint: int | None
    messages: list[Message]
    upto: int | None  # None: the thread had neither messages nor a summary
    complete: bool


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
        self.generation: dict[int, int] = {}  # thread -> bumped whenever a summary write is issued
        self.tails: dict[int, Tail] = {}  # thread -> what is known after its checkpoint (see Tail)
        self._over: set[int] = set()  # threads still over budget after their last summary
        self._agents: dict[int, int] = {}  # thread -> its agent (never changes)

    def tail(self, thread_id: int) -> Tail | None:
        """The thread's tail if nothing was summarised since it was read."""
        tail = self.tails.pop(thread_id, None)
        if tail is None or tail.generation != self.generation.get(thread_id, 0):
            return None
        self.tails[thread_id] = tail  # most recently used last
        return tail

    def keep_tail(self, thread_id: int, generation: int, summary: str | None, checkpoint: int | None,
                  messages: list[Message], upto: int | None, complete: bool) -> None:
        """Remember what a read issued in `generation` found (ignored if a summary write was issued since)."""
        if generation != self.generation.get(thread_id, 0):
            return
        limit = self.memory.config.max_history_messages
        if len(messages) > limit:
            messages, complete = messages[-limit:], False
        self.tails.pop(thread_id, None)
        self.tails[thread_id] = Tail(generation, summary, checkpoint, messages, upto, complete)
        while len(self.tails) > MAX_TAILS:
            del self.tails[next(iter(self.tails))]

    def extend(self, tail: Tail, thread_id: int, new: list[Message]) -> Tail:
        """`tail` joined with a later read `new` of the thread that starts at or before tail.upto + 1
        (messages up to tail.upto are skipped; so are any at or before the checkpoint); kept if still current."""
        after = tail.upto if tail.upto is not None else (tail.checkpoint if tail.checkpoint is not None else -1)
        fresh = [m for m in new if m.id > after]
        messages = tail.messages + fresh
        upto = fresh[-1].id if fresh else tail.upto
        self.keep_tail(thread_id, tail.generation, tail.summary, tail.checkpoint, messages, upto, tail.complete)
        limit = self.memory.config.max_history_messages
        return Tail(tail.generation, tail.summary, tail.checkpoint, messages[-limit:], upto, tail.complete and len(messages) <= limit)

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
                # After a summary, read again only if that one read left the thread over budget; messages
                # that arrived since reach note() and bring us back here if they push it over.
                while await self.step(thread_id) is not None and thread_id in self._over:
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
            self._again.discard(thread_id)  # what was noted so far is committed, so this read sees it
            tail = self.tail(thread_id)
            agent_id = self._agents.get(thread_id)
            if tail is not None and tail.complete and agent_id is not None:
                # Only what arrived since the tail was read; the rest is known. No write can be issued
                # meanwhile (we hold the thread's lock), so the tail stays current.
                after = tail.upto if tail.upto is not None else tail.checkpoint
                tail = self.extend(tail, thread_id, await db.call(partial(thread_messages, after=after, first=READ_LIMIT), thread_id))
            if tail is not None and tail.complete and agent_id is not None:
                messages, previous = tail.messages, tail.summary
            else:
                generation = self.generation.get(thread_id, 0)
                state, messages = await db.call(store.unsummarised, thread_id, READ_LIMIT)
                if state is None:
                    return None
                agent_id, checkpoint, previous = state
                self._agents[thread_id] = agent_id
                upto = messages[-1].id if messages else checkpoint
                self.keep_tail(thread_id, generation, previous, checkpoint, messages, upto, len(messages) < READ_LIMIT)
            if not messages or (len(messages) == 1 and not force):
                self.estimate.pop(thread_id, None)
                self._over.discard(thread_id)
                return None
            tokenizer = memory.tokenizer_for(agent_id)
            counts = [await memory.tokens.message(tokenizer, m) for m in messages]
            total = sum(counts) + memory.config.message_overhead_tokens * len(messages)
            threshold = memory.config.summarize_at * memory.history_budget(agent_id)
            if not force and total <= threshold and len(messages) < READ_LIMIT:
                self.estimate[thread_id] = total
                self._over.discard(thread_id)
                return None
            chunk = _chunk(messages, counts, memory, total, threshold, force)
            text = "\n".join(f"{m.sender or 'narrator'}: {m.content}" for m in chunk)
            prompt = (f"Summary so far: {previous}\n\nNew messages:\n{text}" if previous else f"Messages:\n{text}")
            model = models_of(memory.kernel).get_for(memory.config.summarize_model)
            content = await model.summarize(prompt)
            content = await memory.tokens.truncate(tokenizer, content, memory.config.summary_tokens)
            summary_id = db.next_ids("summaries")
            created = utcnow()
            last = chunk[-1]
            chunk_tokens = sum(counts[: len(chunk)])
            left = total - chunk_tokens - memory.config.message_overhead_tokens * len(chunk)
            self.estimate[thread_id] = left
            if left > threshold or len(messages) >= READ_LIMIT:
                self._over.add(thread_id)
            else:
                self._over.discard(thread_id)
            # Every tail read before this write is stale from the moment it is issued.
            generation = self.generation[thread_id] = self.generation.get(thread_id, 0) + 1
            self.tails.pop(thread_id, None)
            await db.call(
                store.write_summary,
                (summary_id, thread_id, last.id, content, created),
                (summary_id, thread_id, chunk[0].id, last.id, len(chunk), chunk_tokens),
            )
            # What this step read after the chunk is the thread after the new checkpoint, as of that read.
            rest = messages[len(chunk):]
            self.keep_tail(thread_id, generation, content, last.id, rest, rest[-1].id if rest else last.id, len(messages) < READ_LIMIT)
            log.info("thread %s: summary %s folds %d messages (%d tokens) up to %s", thread_id, summary_id, len(chunk), chunk_tokens, last.id)
            # Committed: tell who wants to know (persona agents read the new opening ahead, tobio/turn/prefill.py).
            await publish(memory.kernel, SummaryWritten(agent_id, thread_id, summary_id, content))
            await memory.index_summary(summary_id, agent_id, content, last.created_at, last.channel)
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

