"""The prompt hook: latest summary + as much recent history as fits + retrieved memories, within budget.

The budget is for the whole prompt as the chat model will count it: the persona's system prompt
and examples (measured, not assumed), the summary, memory lines and history, plus a per-message
template overhead. History is filled newest first, so if a summary is still being written the
oldest unsummarised messages are dropped from this prompt rather than overflowing it.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import TYPE_CHECKING

from tobio.db.history import ThreadContext, thread_context, thread_messages
from tobio.memory.items import Hit
from tobio.messages import Message
from tobio.turn.freshness import ngrams
from tobio.turn.placement import NEXT_TO_NEWEST, Injection
from tobio.turn.prompt import SUMMARY_PREFIX

if TYPE_CHECKING:
    from tobio.hooks import PromptStep
    from tobio.memory.service import Memory
    from tobio.models.bundle import Model
    from tobio.turn.prompt import Prompt


REPEAT = 0.6  # share of a memory's word trigrams found in one message already in the prompt that makes it a repeat
FETCH_MORE = 100  # hits one search fetches, read down until k are picked: what the ranker reorders anyway
PRIVATE_PREFIX = "dm."  # private channels: what is said there is recalled only there


def private_elsewhere(item_channel: str | None, here: str | None) -> bool:
    """Whether a memory comes from a private conversation other than the one being answered, and so
    must not be recalled here (Ada's DM with the agent never surfaces when Ben talks to it)."""
    return bool(item_channel) and str(item_channel).startswith(PRIVATE_PREFIX) and item_channel != here


def _who(hit: Hit) -> str:
    kind = hit.item.kind
    if kind == "summary":
        return "summary"
    if kind == "reflection":  # its sender is whom the thought is about
        return f"your thought about {hit.item.sender}" if hit.item.sender else "your thought"
    return hit.item.sender or "someone"


def recalled_text(hits: list[Hit]) -> str:
    """How retrieved memories read in the prompt (next to the newest message): best first, each with its
    date and who said it.

    A heading per day instead of the date on every line would save ~10 tokens a memory (SmolLM2 spells
    dates digit by digit), but bench/person.py lost a fact asked after 100 turns with it (facts 0.56 ->
    0.44), in date order and with relative dates ("today") alike."""
    return "\n".join(f"Memory ({hit.item.created_at:%Y-%m-%d}, {_who(hit)}): {hit.item.content}" for hit in hits)


def distinct(hits: list[Hit], history: list[Message], k: int) -> tuple[list[Hit], int]:
    """The first `k` hits that say something the prompt does not already: a memory that mostly repeats a
    message in the history, or a better-ranked memory, is skipped (with the count of those skipped).

    People repeat themselves. In a 40-turn chat the user's "Which train is the fastest you know?" came back
    as two memories, next to the same question in the history: three copies, 40 tokens re-read each turn,
    and nothing recalled."""
    seen = [ngrams(m.content) for m in history]
    out: list[Hit] = []
    skipped = 0
    for hit in hits:
        if len(out) == k:
            break
        mine = ngrams(hit.item.content)
        if mine and any(len(mine & other) >= REPEAT * len(mine) for other in seen):
            skipped += 1
            continue
        out.append(hit)
        seen.append(mine)
    return out, skipped


async def _prompt_tokens(memory: Memory, model: Model, prompt: Prompt) -> int:
    """What the final messages cost with the model's tokenizer, template overhead included."""
    overhead = memory.config.message_overhead_tokens
    messages = prompt.messages()
    total = 0
    # History contents are counted by message id (cached); the rest by text.
    by_content = {m.content: m for m in prompt.history}
    for m in messages:
        content = str(m.get("content", ""))
        known = by_content.get(content)
        total += overhead + (await memory.tokens.message(model, known) if known else await memory.tokens.text(model, content))
    return total


async def thread_history(memory: Memory, thread_id: int) -> ThreadContext:
    """The thread's latest summary and the messages after its checkpoint (the newest max_history_messages).

    The thread's tail (see summarizer.Tail) is what earlier reads found while no summary was written
    since; joined to a read of only what is newer than it, it is the whole unsummarised history, so a
    turn never reads the thread's history again and its cost does not grow with it. The whole thread
    is read again only when there is no current tail (after a summary, or the first time). Persona
    prompts start from this (memory registers it as the agents' history source).
    """
    summarizer = memory.summarizer
    most = memory.config.max_history_messages
    tail = summarizer.tail(thread_id)
    if tail is not None:
        after = tail.upto if tail.upto is not None else tail.checkpoint
        fresh = await memory.kernel.db.call(partial(thread_messages, after=after, first=most), thread_id)
        if len(fresh) < most:  # else far behind (a burst of messages): read the newest afresh, below
            # Reads are contiguous runs of the thread's pushes (commits go in id order), so two that meet
            # miss nothing between them; the tail's summary is current (no write was issued since it was read).
            tail = summarizer.extend(tail, thread_id, fresh)
            return ThreadContext(tail.summary, tail.checkpoint, tail.messages)
    generation = summarizer.generation.get(thread_id, 0)
    context = await memory.kernel.db.call(thread_context, thread_id, most)
    upto = context.messages[-1].id if context.messages else context.checkpoint
    summarizer.keep_tail(thread_id, generation, context.summary, context.checkpoint, context.messages, upto, len(context.messages) < most)
    return context


async def _recall(
    memory: Memory, agent_id: int, query: str, here: str | None, exclude: set[tuple[str, int]], history: list[Message],
) -> tuple[list[Hit], int, int, int]:
    """The best k hits that are neither private elsewhere nor repeats of the history, with the counts of
    those skipped and how many were looked at. One search fetches FETCH_MORE (the ranker orders that many
    anyway, so it costs about what k does) and the hits are read down the list until k are picked: people
    repeat themselves, and a long chat of near-identical turns made every one of the first 2k a repeat (49
    of 300 prompts recalled anything). A second search for the rest cost as much again, and grew with the
    history."""
    k = memory.config.k
    hits = await memory.search(agent_id, query, k=max(2 * k, FETCH_MORE), exclude=exclude)
    picked, repeats = distinct([h for h in hits if not private_elsewhere(h.item.channel, here)], history, k)
    looked = next(i for i, h in enumerate(hits, 1) if h is picked[-1]) if len(picked) == k else len(hits)
    private = sum(private_elsewhere(h.item.channel, here) for h in hits[:looked])
    return picked, private, repeats, looked


def make_hook(memory: Memory) -> PromptStep:
    """Build the hook bound to this memory service."""

    async def memory_hook(prompt: Prompt) -> None:
        """Replace the history with a budgeted one and add the top memories as system lines."""
        began = time.perf_counter()
        config = memory.config
        agent = prompt.agent
        model = memory.tokenizer_for(agent.id)
        overhead = config.message_overhead_tokens
        # The persona started from memory's history source (thread_history): the whole unsummarised history.
        context = ThreadContext(prompt.summary, None, list(prompt.history))

        # What the persona costs before memory adds anything.
        prompt.summary, prompt.history = None, []
        fixed = await _prompt_tokens(memory, model, prompt)
        memory.fixed_tokens[agent.id] = fixed
        available = config.budget_tokens - config.reserve_tokens - fixed

        summary = context.summary
        if summary:
            summary = await memory.tokens.truncate(model, summary, min(config.summary_tokens, max(0, available // 3)))
        summary_cost = (await memory.tokens.text(model, SUMMARY_PREFIX + summary) + overhead) if summary else 0
        room = available - summary_cost - min(config.memory_tokens, max(0, available // 4))

        history: list[Message] = []
        used = 0
        for message in reversed(context.messages):
            cost = await memory.tokens.message(model, message) + overhead
            if used + cost > room:
                if not history:  # the newest message alone is too long: keep its beginning
                    text = await memory.tokens.truncate(model, message.content, max(0, room - overhead))
                    history.append(dataclasses.replace(message, content=text))
                break
            history.append(message)
            used += cost
        history.reverse()
        dropped = len(context.messages) - len(history)

        query = prompt.incoming.content if prompt.incoming else (history[-1].content if history else "")
        here = prompt.incoming.channel if prompt.incoming else (history[-1].channel if history else None)
        exclude = {("message", m.id) for m in history}
        hits, private, repeats, fetched = await _recall(memory, agent.id, query, here, exclude, history) if config.k and query else ([], 0, 0, 0)
        room_for_memories = min(config.memory_tokens, available - summary_cost - used)
        kept: list[Hit] = []
        for hit in hits:
            if await memory.tokens.text(model, recalled_text([*kept, hit])) <= room_for_memories:
                kept.append(hit)

        prompt.summary = summary
        prompt.history = history
        # Recalled memories change every turn: they go next to the newest message, not into the system
        # prompt, so the persona, examples and history before them stay a reusable prefix.
        recalled = Injection(NEXT_TO_NEWEST, "system", recalled_text(kept))
        prompt.injections.append(recalled)
        # Guarantee: measure the real thing and shed memories, then oldest history, until it fits.
        total = await _prompt_tokens(memory, model, prompt)
        while total > config.budget_tokens - config.reserve_tokens and (kept or len(prompt.history) > 1):
            if kept:
                kept.pop()
                recalled.content = recalled_text(kept)
            else:
                prompt.history.pop(0)
                dropped += 1
            total = await _prompt_tokens(memory, model, prompt)
        if dropped or context.messages and len(context.messages) >= config.max_history_messages:
            memory.summarizer.poke(prompt.thread_id)
        prompt.notes["memory"] = {
            "budget": config.budget_tokens, "prompt_tokens": total, "fixed_tokens": fixed,
            "summary": bool(summary), "history": len(prompt.history), "dropped_pending_summary": dropped,
            "memories": [f"{h.item.kind}:{h.item.source_id}" for h in kept],
            "private_elsewhere_skipped": private, "repeats_skipped": repeats, "fetched": fetched,
            "ms": round((time.perf_counter() - began) * 1000, 2),
        }

    return memory_hook
