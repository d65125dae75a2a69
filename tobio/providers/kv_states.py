"""Saved KV states of the embedded model, so agents taking turns on one llama.cpp context get their
already-read prompts back instead of reading them again.

Replaces llama-cpp-python's LlamaRAMCache, which saves the whole context state plus a copy of the
logits buffer (about 100 MB for n_batch 512 and a 49k vocabulary) after every completion, yet counts
only the context state against its capacity: memory grew without bound, and each save took ~100 ms.
Here only sequence 0's KV cells and the token ids are kept (22.5 KB a token for SmolLM2-135M), within
a byte budget that counts everything held.

States are saved lazily: just before a prompt would overwrite the live context's tokens from a reply
(the next speaker's prompt, or a summary's). Measured on SmolLM2-135M on a shared 2-core machine:
saving 1000 tokens takes 4-7 ms and restoring them 4-5 ms (LlamaRAMCache: 40-125 ms and 57-80 ms),
while evaluating them takes 8-21 ms *a token*. So a restore pays off for any real prefix, and saving
only at a switch, rather than after every completion, costs nothing while one agent keeps talking.
Background requests' own contexts are not saved: summaries and reflections rarely share a prefix with
the next one. The exception is one that stepped aside for a reply (local.py): its context is kept for its
restart, which restores it instead of reading its prompt again, and is dropped once restored. Nor is a context whose tokens the next prompt reuses anyway, moved (kv_reuse).

Each prompt then uses whichever source spares it the most evaluation, the live context or a saved
state: its shared prefix plus the chunks kv_reuse can move into place.

Everything here runs on the one llama thread, under the model's lock.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tobio.providers.kv_reuse import (
    Plan,
    apply_plan,
    can_insert,
    can_shift,
    first_turn_end,
    plan_reuse,
    shared_prefix,
)

log = logging.getLogger(__name__)

SEQ = 0  # llama-cpp-python decodes everything into sequence 0
ENTRY_OVERHEAD = 512  # bytes of Python objects around each state's buffers (entry, array header, dict slot)
PREFILL_SLACK = 4  # a prefill's closing tokens (the template's cue for a reply) that the next prompt replaces
# Tokens a prefill reads between checks for a waiting reply: the most a reply waits for a prefill it interrupts.
# On SmolLM2-135M with 2 cores, 32 made replies wait 0.18-0.25 s (bench/latency.py, a line sent the moment the
# reply ends, so a prefill is nearly always running); 16 take ~0.1 s.
PREFILL_CHUNK = 16
MIN_LOSS = 32  # a reply's tokens a new prompt must drop before they are worth saving (not a retokenised tail)
# A restore replaces the whole context: worth it when it spares evaluating MIN_GAIN tokens more than
# the live context already shares (the fixed costs: clearing, replaying the last token), plus the copy
# (measured: a restored token costs under 1/1000 of an evaluated one; 1/64 leaves room for a faster CPU).
MIN_GAIN = 8
RESTORE_COST = 1 / 64


@dataclass(eq=False)
class _State:
    tokens: npt.NDArray[np.intc]
    data: bytearray
    once: bool = False  # a background context kept for its own restart: dropped once restored

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.tokens.nbytes + ENTRY_OVERHEAD


def _reach(plan: Plan) -> int:
    """How far into the old context the plan reuses: tokens past this point are lost with it."""
    return max([plan.prefix, *(c.src + c.size for c in plan.chunks)])


class KVStates:
    """KV states of one `Llama` by token prefix, least recently used dropped first within `capacity` bytes,
    and chunk reuse (runs of at least `reuse_min_tokens` moved into place; 0 turns it off) for requests
    whose history moved, or for every request with `always`.

    `install` hooks the model's `generate`, the one place that sees each prompt's exact tokens just
    before llama-cpp-python matches them against the live context."""

    def __init__(self, llama: Any, capacity: int, reuse_min_tokens: int = 0, *, always: bool = False) -> None:
        self.llama = llama
        self.capacity = capacity
        self.reuse_min_tokens = reuse_min_tokens if can_shift(llama) else 0
        self.always = always
        self._moves = always  # whether the request about to generate may move chunks
        self._inserts = can_insert(llama)
        self._anchor = 0  # the current prompt's first turn, which a reused context must share
        self.moves = 0  # prompts that reused chunks moved from elsewhere in a context
        self.nbytes = 0
        self.saves = 0
        self.restores = 0
        self._states: OrderedDict[int, _State] = OrderedDict()
        self._ids = 0
        self._kept = np.zeros(0, dtype=np.intc)  # the live tokens a reply produced, not yet saved
        self._background = False  # the class of the request about to generate
        self._prefill = False
        self.prefills_skipped = 0
        self.prefills_cut = 0
        self.prefill_read = 0  # tokens the last prefill evaluated
        self.inserted = 0  # tokens the last prompt's moves evaluated between moved chunks
        self.yield_to: Callable[[], bool] = lambda: False  # whether a reply is waiting for the model
        self.prompt_tokens = 0  # of the last prompt generated from
        self._last_background = True  # the class of the last request that generated
        self._stepped_aside = False  # the live context is a background generation's that will start again

    def install(self) -> KVStates:
        """Route the model's generations through this store."""
        generate = self.llama.generate

        def generate_with_states(tokens: Sequence[int], *args: Any, **kwargs: Any) -> Generator[int, Any, None]:
            self.prompt_tokens = len(tokens)
            if self._prefill:
                self.prefill(tokens)
                return
            self.before(tokens)
            yield from generate(tokens, *args, **kwargs)

        self.llama.generate = generate_with_states
        return self

    def next_request(self, *, background: bool, prefill: bool = False, history_moved: bool = False) -> None:
        """Say whether the next generation is background work (its context is not worth saving), a
        prefill (read the prompt, keep it like a reply's context, generate nothing), or one whose history a
        new summary moved (its kept history may be moved into place rather than read again)."""
        self._background = background and not prefill
        self._prefill = prefill
        self._moves = self.always or history_moved

    def prefill(self, tokens: Sequence[int]) -> None:
        """Read `tokens` into the live context unless it or a saved state already holds all but the last
        few (a prefill that arrives after the turn it prepared for has nothing left to do).

        It reads PREFILL_CHUNK tokens at a time and stops as soon as a reply is waiting (`yield_to`): what it
        read is still a cached prefix for that reply, which reads the rest itself, so a prefill running when
        the next line arrives costs that reply at most one chunk's wait."""
        prompt = np.asarray(tokens, dtype=np.intc)
        have = max([shared_prefix(self.llama.input_ids[: self.llama.n_tokens], prompt),
                    *(shared_prefix(state.tokens, prompt) for state in self._states.values())])
        self.prefill_read = 0
        if have >= len(prompt) - PREFILL_SLACK:
            self.prefills_skipped += 1
            return
        self.before(tokens)
        import llama_cpp

        llama = self.llama
        start = min(shared_prefix(llama.input_ids[: llama.n_tokens], prompt), len(prompt) - 1)
        llama.n_tokens = start
        for at in range(start, len(prompt), PREFILL_CHUNK):
            if self.yield_to():
                self.prefills_cut += 1
                break
            llama.eval(prompt[at:at + PREFILL_CHUNK].tolist())
        # Finish the queued decodes now: llama.cpp would otherwise count them with the next request's work.
        llama_cpp.llama_synchronize(llama._ctx.ctx)
        llama._requires_eval = True  # no fresh logits for a sampler: the next prompt replays its last token
        self.prefill_read = llama.n_tokens - start + self.inserted

    def stepped_aside(self) -> None:
        """The background generation in the live context stopped for a reply and will start again: keep its
        context at the next switch, like a reply's, so the restart restores its prompt instead of reading it."""
        self._stepped_aside = True

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        """Forget every saved state (benchmarks use this to measure prompt evaluation itself)."""
        self._states.clear()
        self._kept = self._kept[:0]
        self.nbytes = 0

    def before(self, tokens: Sequence[int]) -> None:
        """Save the live reply context if this prompt would lose it, then set up the best source of
        reused tokens (the live context or a saved state) and move its reusable chunks into place."""
        prompt = np.asarray(tokens, dtype=np.intc)
        self._anchor = first_turn_end(self.llama, prompt) if self.reuse_min_tokens and self._moves else 0
        live = self.llama.input_ids[: self.llama.n_tokens]
        if not self._last_background or self._stepped_aside:
            self._kept = live.copy()
        self._last_background = self._background
        plan = self._plan(live, prompt)
        keep = shared_prefix(self._kept, live)
        if self.capacity and keep - min(keep, _reach(plan)) >= MIN_LOSS:
            self._save(keep, once=self._stepped_aside)
            self._kept = self._kept[:0]
            plan = self._plan(self.llama.input_ids[: self.llama.n_tokens], prompt)
        self._stepped_aside = False
        best, best_plan = None, plan
        # A stepped-aside job's own context first: on a tie (another state holds the same prompt) it is the one
        # to use up.
        for key, state in sorted(self._states.items(), key=lambda item: not item[1].once):
            candidate = self._plan(state.tokens, prompt)
            if (candidate.reused > best_plan.reused
                    and candidate.reused - plan.reused >= MIN_GAIN + RESTORE_COST * len(state.tokens)):
                best, best_plan = key, candidate
        if best is not None and not self._restore(best):
            return
        self.inserted = 0
        if best_plan.chunks:
            try:
                apply_plan(self.llama, prompt, best_plan)
                self.inserted = best_plan.end - best_plan.reused  # new tokens decoded between moved chunks
            except Exception as exc:  # noqa: BLE001 - correctness first: read the whole prompt instead
                log.warning("could not move reused KV cells (%s); evaluating the prompt instead", exc)
                self.llama._ctx.kv_cache_clear()
                self.llama.reset()
                return
            self.moves += 1

    def _plan(self, cached: npt.NDArray[np.intc], prompt: npt.NDArray[np.intc]) -> Plan:
        return plan_reuse(cached, prompt, self.reuse_min_tokens if self._moves else 0, inserts=self._inserts, anchor=self._anchor)

    def _save(self, n: int, once: bool = False) -> None:
        """Keep the first `n` live tokens' KV cells (the cells after them are dropped from the context)."""
        llama = self.llama
        if llama.n_tokens > n:
            llama._ctx.kv_cache_seq_rm(SEQ, n, -1)
            llama.n_tokens = n
        import llama_cpp

        ctx = llama._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, SEQ)
        data = bytearray(size)
        written = llama_cpp.llama_state_seq_get_data(ctx, (ctypes.c_uint8 * size).from_buffer(data), size, SEQ)
        if written == 0 or written > size:
            log.warning("could not save a KV state of %d tokens", n)
            return
        del data[written:]
        state = _State(llama.input_ids[:n].copy(), data, once)
        if state.nbytes > self.capacity:
            return
        for key, old in list(self._states.items()):
            # An older state of the same conversation that this one extends would never win a lookup again.
            if len(old.tokens) <= n and shared_prefix(old.tokens, state.tokens) == len(old.tokens):
                self._drop(key)
        while self.nbytes + state.nbytes > self.capacity:
            self._drop(next(iter(self._states)))
        self._ids += 1
        self._states[self._ids] = state
        self.nbytes += state.nbytes
        self.saves += 1

    def _restore(self, key: int) -> bool:
        import llama_cpp

        llama = self.llama
        state = self._states[key]
        self._states.move_to_end(key)
        llama._ctx.kv_cache_seq_rm(SEQ, 0, -1)
        size = len(state.data)
        read = llama_cpp.llama_state_seq_set_data(
            llama._ctx.ctx, (ctypes.c_uint8 * size).from_buffer(state.data), size, SEQ)
        if read != size:
            log.warning("could not restore a KV state of %d tokens; evaluating the prompt instead", len(state.tokens))
            self._drop(key)
            llama.reset()
            return False
        n = len(state.tokens)
        llama.input_ids[:n] = state.tokens
        llama.n_tokens = n
        llama._requires_eval = True  # no logits were restored: generate() re-evaluates the last prompt token
        self.restores += 1
        if state.once:
            self._drop(key)
        return True

    def _drop(self, key: int) -> None:
        self.nbytes -= self._states.pop(key).nbytes
