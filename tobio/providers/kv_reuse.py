"""Chunk reuse for the embedded model: a new prompt reuses the runs of tokens it shares with the live
context even when they no longer sit at the same positions, by moving their KV cells instead of
evaluating those tokens again (what llama.cpp's server calls `--cache-reuse`).

Why: prefix matching alone stops at the first token that differs. A turn's prompt is
`[persona][summary][history][this turn's notes][new line]`, so on the next turn the previous notes
sit between the history and the last exchange, and the last exchange was read again; and when a new
summary replaces old messages, everything after the summary was read again. Here both are found as
chunks of the old context and shifted into place; only the tokens that are really new are evaluated.

It is an approximation, as in llama.cpp's server: a moved cell keeps what it computed while attending
to the tokens that preceded it before the move (the previous turn's notes, the messages a summary
replaced). Only runs of at least `min_tokens` are moved, and a cell only ever moves to an earlier
position, so each move lands in room that was freed.

New tokens that belong between two moved chunks (a new summary before kept history) are decoded at
their own positions while the chunks wait in sequence 1: llama.cpp appends to a sequence only after
its last position.

When (`LocalConfig.kv_reuse`): by default only for a request that says its history moved
(`ChatRequest.history_moved`: the persona agent's turn after a new summary, and that summary's prefill).
Moving the last exchange every turn (`always`) lets a small model copy its earlier replies: a reply's
cells were computed right after the previous turn's notes, the new notes read almost the same, and the
model carries on with the old reply. Once per summary, the moved history is read once in its new place
and the approximation does not compound (README, "Moved KV cells", has the measurements).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tobio.providers.llama_adapter import SEQ

if TYPE_CHECKING:
    from tobio.providers.llama_adapter import LlamaEngine

SEQUENCES = 2  # sequence 0 (the prompt) and PARKED
PARKED = 1  # where moved chunks wait while the new tokens before them are decoded


@dataclass(frozen=True)
class Chunk:
    """`size` tokens of the old context at `src` that the new prompt has at `at` (`at <= src`)."""

    at: int
    src: int
    size: int


@dataclass
class Plan:
    """How a prompt reuses an old context: its shared prefix, then chunks moved to earlier positions."""

    prefix: int
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def reused(self) -> int:
        """Prompt tokens that need no evaluation."""
        return self.prefix + sum(c.size for c in self.chunks)

    @property
    def end(self) -> int:
        """Where the prompt's final stretch of new tokens starts (generation evaluates that part)."""
        return self.chunks[-1].at + self.chunks[-1].size if self.chunks else self.prefix


def shared_prefix(a: npt.NDArray[np.intc], b: npt.NDArray[np.intc]) -> int:
    """Length of the common prefix of two token arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def plan_reuse(cached: npt.NDArray[np.intc], prompt: npt.NDArray[np.intc], min_tokens: int,
               *, inserts: bool = True, anchor: int = 0) -> Plan:
    """Find the prompt's shared prefix with `cached`, then, left to right, runs of at least `min_tokens`
    that `cached` holds at the same or a later position than the prompt needs them, in order.

    Chunks move only when the shared prefix covers the prompt's first `anchor` tokens (its first turn:
    the persona), so cells never move between two agents' conversations, where what they attended to
    would be another persona. With `inserts` False, a chunk must follow the prefix or the previous
    chunk directly (no new tokens before it), for contexts that cannot decode between kept cells."""
    prefix = shared_prefix(cached, prompt)
    plan = Plan(prefix)
    if min_tokens <= 0 or prefix >= len(cached) or prefix < anchor or len(prompt) - prefix < min_tokens:
        return plan
    windows: dict[bytes, list[int]] = {}
    for j in range(prefix, len(cached) - min_tokens + 1):
        windows.setdefault(cached[j:j + min_tokens].tobytes(), []).append(j)
    i, next_src = prefix, prefix
    while i + min_tokens <= len(prompt):
        starts = windows.get(prompt[i:i + min_tokens].tobytes())
        k = bisect.bisect_left(starts, max(i, next_src)) if starts else 0
        if not starts or k == len(starts):
            if not inserts:
                break
            i += 1
            continue
        src = starts[k]
        size = min_tokens + shared_prefix(cached[src + min_tokens:], prompt[i + min_tokens:])
        plan.chunks.append(Chunk(i, src, size))
        i, next_src = i + size, src + size
    return plan


def first_turn_end(engine: LlamaEngine, prompt: npt.NDArray[np.intc]) -> int:
    """Tokens up to and including the prompt's first end-of-turn token (all of them if it has none):
    the system turn that says whose conversation this is."""
    end = engine.first_end_of_turn(prompt)
    return len(prompt) if end is None else end + 1


def can_insert(engine: LlamaEngine) -> bool:
    """Whether the context has the second sequence that new tokens between kept chunks need."""
    return engine.sequences > PARKED


def apply_plan(engine: LlamaEngine, prompt: npt.NDArray[np.intc], plan: Plan) -> None:
    """Rearrange the live context to hold `prompt[:plan.end]`, evaluating only the new tokens between
    chunks. Generation then finds that prefix and evaluates the rest of the prompt as usual."""
    if not plan.chunks:
        return
    free = plan.prefix
    for chunk in plan.chunks:  # drop every cell no chunk keeps
        if chunk.src > free:
            engine.seq_remove(SEQ, free, chunk.src)
        free = chunk.src + chunk.size
    engine.seq_remove(SEQ, free, -1)
    for chunk in plan.chunks:  # left to right, each into room already freed
        if chunk.src != chunk.at:
            engine.seq_shift(SEQ, chunk.src, chunk.src + chunk.size, chunk.at - chunk.src)
    inserts = any(c.at > (p.at + p.size if p else plan.prefix)
                  for p, c in zip([None, *plan.chunks], plan.chunks, strict=False))
    if inserts:
        engine.seq_copy(SEQ, PARKED, plan.prefix, -1)
        engine.seq_remove(SEQ, plan.prefix, -1)
    pos = plan.prefix
    for chunk in plan.chunks:
        if chunk.at > pos:
            engine.decode_at(prompt[pos:chunk.at], pos)
        if inserts:
            engine.seq_copy(PARKED, SEQ, chunk.at, chunk.at + chunk.size)
        pos = chunk.at + chunk.size
    if inserts:
        engine.seq_remove(PARKED, -1, -1)
    engine.adopt(prompt[:pos])  # no logits for the last kept token: generation replays it if need be
