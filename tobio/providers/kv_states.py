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
the next one.

Everything here runs on the one llama thread, under the model's lock.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

SEQ = 0  # llama-cpp-python decodes everything into sequence 0
ENTRY_OVERHEAD = 512  # bytes of Python objects around each state's buffers (entry, array header, dict slot)
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

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.tokens.nbytes + ENTRY_OVERHEAD


def shared_prefix(a: npt.NDArray[np.intc], b: npt.NDArray[np.intc]) -> int:
    """Length of the common prefix of two token arrays."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class KVStates:
    """KV states of one `Llama` by token prefix, least recently used dropped first within `capacity` bytes.

    `install` hooks the model's `generate`, the one place that sees each prompt's exact tokens just
    before llama-cpp-python matches them against the live context."""

    def __init__(self, llama: Any, capacity: int) -> None:
        self.llama = llama
        self.capacity = capacity
        self.nbytes = 0
        self.saves = 0
        self.restores = 0
        self._states: OrderedDict[int, _State] = OrderedDict()
        self._ids = 0
        self._kept = np.zeros(0, dtype=np.intc)  # the live tokens a reply produced, not yet saved
        self._background = False  # the class of the request about to generate
        self._last_background = True  # the class of the last request that generated

    def install(self) -> KVStates:
        """Route the model's generations through this store."""
        generate = self.llama.generate

        def generate_with_states(tokens: Sequence[int], *args: Any, **kwargs: Any) -> Generator[int, Any, None]:
            self.before(tokens)
            yield from generate(tokens, *args, **kwargs)

        self.llama.generate = generate_with_states
        return self

    def next_request(self, *, background: bool) -> None:
        """Say whether the next generation is background work (its context is not worth saving)."""
        self._background = background

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        """Forget every saved state (benchmarks use this to measure prompt evaluation itself)."""
        self._states.clear()
        self._kept = self._kept[:0]
        self.nbytes = 0

    def before(self, tokens: Sequence[int]) -> None:
        """Save the live reply context if this prompt would overwrite it, then restore the best saved prefix."""
        prompt = np.asarray(tokens, dtype=np.intc)
        live = self.llama.input_ids[: self.llama.n_tokens]
        if not self._last_background:
            self._kept = live.copy()
        self._last_background = self._background
        shared = shared_prefix(live, prompt)
        keep = shared_prefix(self._kept, live)
        if keep - shared >= MIN_LOSS:
            self._save(keep)
            self._kept = self._kept[:0]
        best, best_shared = None, 0
        for key, state in self._states.items():
            n = shared_prefix(state.tokens, prompt)
            if n > best_shared:
                best, best_shared = key, n
        if best is not None and best_shared - shared >= MIN_GAIN + RESTORE_COST * len(self._states[best].tokens):
            self._restore(best)

    def _save(self, n: int) -> None:
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
        state = _State(llama.input_ids[:n].copy(), data)
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

    def _restore(self, key: int) -> None:
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
            return
        n = len(state.tokens)
        llama.input_ids[:n] = state.tokens
        llama.n_tokens = n
        llama._requires_eval = True  # no logits were restored: generate() re-evaluates the last prompt token
        self.restores += 1

    def _drop(self, key: int) -> None:
        self.nbytes -= self._states.pop(key).nbytes
