"""Chunk reuse for the embedded model: a new prompt reuses the runs of tokens it shares with the live
context even when they no longer sit at the same positions, by moving their KV cells instead of
evaluating those tokens again (what llama.cpp's server calls `--cache-reuse`).

Why: prefix matching alone stops at the first token that differs. A turn's prompt is
`[persona][summary][history][this turn's notes][new line]`, so on the next turn the previous notes
sit between the history and the last exchange, and the last exchange was read again; and when a new
summary replaces old messages, everything after the summary was read again (reuse fell to ~0.2 on
those turns). Here both are found as chunks of the old context and shifted into place; only the
tokens that are really new are evaluated.

It is an approximation, as in llama.cpp's server: a moved cell keeps what it computed while attending
to the tokens that preceded it before the move (the previous turn's notes, the messages a summary
replaced). Only runs of at least `min_tokens` are moved, and a cell only ever moves to an earlier
position, so each move lands in room that was freed.

New tokens that belong between two moved chunks (a new summary before kept history) are decoded at
their own positions while the chunks wait in sequence 1: llama.cpp appends to a sequence only after
its last position.

When (`LocalConfig.kv_reuse`): by default only for a request that says its history moved
(`ChatRequest.history_moved`: the persona agent's turn after a new summary, and that summary's prefill).
Moving the last exchange every turn (`always`) made SmolLM2-135M's replies copy earlier ones: a reply's
cells were computed right after the previous turn's notes, the new notes read almost the same, and the
model carried on with the old reply (stale replies resampled per turn 0.41 -> 1.34 in bench/latency.py).
Once per summary, the kept history's cells carry what they attended to among the messages the summary
replaced, which the prompt no longer shows; bench/person.py scored 0.752 before and after it was turned
on (together with session 6's echo and recall changes).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

SEQ = 0  # llama-cpp-python decodes everything into sequence 0
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


def with_parking_sequence(llama: Any) -> None:
    """Give a freshly loaded `Llama` a context with the second sequence chunks wait in.

    llama-cpp-python builds its context with one sequence and no setting for more, so the context is
    built again (before anything was evaluated) with two, in one unified KV buffer: a sequence sees
    the whole n_ctx, and cells shared by both are stored once."""
    import contextlib

    from llama_cpp import _internals

    llama.context_params.n_seq_max = PARKED + 1
    llama.context_params.kv_unified = True
    old = llama._ctx
    llama._ctx = llama._stack.enter_context(contextlib.closing(
        _internals.LlamaContext(model=llama._model, params=llama.context_params, verbose=llama.verbose)))
    old.close()


def first_turn_end(llama: Any, prompt: npt.NDArray[np.intc]) -> int:
    """Tokens up to and including the prompt's first end-of-turn token (all of them if it has none):
    the system turn that says whose conversation this is."""
    import llama_cpp

    vocab = llama._model.vocab
    for i, token in enumerate(prompt.tolist()):
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            return i + 1
    return len(prompt)


def can_insert(llama: Any) -> bool:
    """Whether the context has the second sequence that new tokens between kept chunks need."""
    import llama_cpp

    return int(llama_cpp.llama_n_seq_max(llama._ctx.ctx)) > PARKED


def can_shift(llama: Any) -> bool:
    """Whether the model's KV cells can be moved at all (RoPE models can; some recurrent ones cannot)."""
    import llama_cpp

    return bool(llama_cpp.llama_memory_can_shift(llama._ctx.memory))


def apply_plan(llama: Any, prompt: npt.NDArray[np.intc], plan: Plan) -> None:
    """Rearrange the live context to hold `prompt[:plan.end]`, evaluating only the new tokens between
    chunks. Generation then finds that prefix and evaluates the rest of the prompt as usual."""
    if not plan.chunks:
        return
    ctx = llama._ctx
    free = plan.prefix
    for chunk in plan.chunks:  # drop every cell no chunk keeps
        if chunk.src > free:
            ctx.kv_cache_seq_rm(SEQ, free, chunk.src)
        free = chunk.src + chunk.size
    ctx.kv_cache_seq_rm(SEQ, free, -1)
    for chunk in plan.chunks:  # left to right, each into room already freed
        if chunk.src != chunk.at:
            ctx.kv_cache_seq_shift(SEQ, chunk.src, chunk.src + chunk.size, chunk.at - chunk.src)
    inserts = any(c.at > (p.at + p.size if p else plan.prefix)
                  for p, c in zip([None, *plan.chunks], plan.chunks, strict=False))
    if inserts:
        ctx.kv_cache_seq_cp(SEQ, PARKED, plan.prefix, -1)
        ctx.kv_cache_seq_rm(SEQ, plan.prefix, -1)
    pos = plan.prefix
    for chunk in plan.chunks:
        if chunk.at > pos:
            _decode(llama, prompt[pos:chunk.at], pos)
        if inserts:
            ctx.kv_cache_seq_cp(PARKED, SEQ, chunk.at, chunk.at + chunk.size)
        pos = chunk.at + chunk.size
    if inserts:
        ctx.kv_cache_seq_rm(PARKED, -1, -1)
    llama.input_ids[:pos] = prompt[:pos]
    llama.n_tokens = pos
    llama._requires_eval = True  # no logits for the last kept token: generation replays it if need be


def _decode(llama: Any, tokens: npt.NDArray[np.intc], pos: int) -> None:
    """Evaluate `tokens` into sequence 0 at positions from `pos` (the last position it holds, plus one)."""
    for start in range(0, len(tokens), llama.n_batch):
        part = tokens[start:start + llama.n_batch].tolist()
        llama._batch.set_batch(batch=part, n_past=pos + start, logits_all=False)
        llama._ctx.decode(llama._batch)
