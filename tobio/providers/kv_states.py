"""Saved KV states of the embedded model, so agents taking turns on one llama.cpp context get their
already-read prompts back instead of reading them again.

Replaces llama-cpp-python's LlamaRAMCache, which saves the whole context state plus a copy of the
logits buffer after every completion, yet counts only the context state against its capacity, so
memory grew without bound and every completion paid for a save. Here only sequence 0's KV cells and
the token ids are kept, within a byte budget that counts everything held.

States are saved lazily: just before a prompt would overwrite the live context's tokens from a reply
(the next speaker's prompt, or a summary's). Restoring cells costs a small fraction of evaluating the
tokens again, so a restore pays off for any real prefix, and saving only at a switch, rather than after
every completion, costs nothing while one agent keeps talking (README, "Saved KV states", has the
timings). Background requests' own contexts are not saved: summaries and reflections rarely share a
prefix with the next one. The exception is one that stepped aside for a reply (generation.py): its
context is kept for its restart, which restores it instead of reading its prompt again, and is dropped
once restored. Nor is a context whose tokens the next prompt reuses anyway, moved (kv_reuse).

Each prompt then uses whichever source spares it the most evaluation, the live context or a saved
state: its shared prefix plus the chunks kv_reuse can move into place.

Everything here runs on the one llama thread, under the model's lock.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tobio.providers.kv_reuse import (
    Plan,
    apply_plan,
    can_insert,
    first_turn_end,
    plan_reuse,
    shared_prefix,
)

if TYPE_CHECKING:
    from tobio.providers.llama_adapter import LlamaEngine

log = logging.getLogger(__name__)

ENTRY_OVERHEAD = 512  # bytes of Python objects around each state's buffers (entry, array header, dict slot)
PREFILL_SLACK = 4  # a prefill's closing tokens (the template's cue for a reply) that the next prompt replaces
# Tokens a prefill reads between checks for a waiting reply: the most a reply waits for a prefill it interrupts.
# A line sent the moment a reply ends nearly always finds a prefill running, so this bounds that reply's wait.
PREFILL_CHUNK = 16
MIN_LOSS = 32  # a reply's tokens a new prompt must drop before they are worth saving (not a retokenised tail)
# A restore replaces the whole context: worth it when it spares evaluating MIN_GAIN tokens more than
# the live context already shares (the fixed costs: clearing, replaying the last token), plus the copy
# (a restored token costs a small fraction of an evaluated one; 1/64 leaves room for a faster CPU).
MIN_GAIN = 8
RESTORE_COST = 1 / 64


@dataclass(frozen=True)
class RequestFlags:
    """What a request says about itself that decides what the store does with its prompt."""

    background: bool = False  # nobody waits on it (a summary): its context is not worth saving
    prefill: bool = False  # read the prompt and keep it like a reply's context; generate nothing
    history_moved: bool = False  # a new summary moved its history: kept history may be moved into place


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
    """KV states of one model by token prefix, least recently used dropped first within `capacity` bytes,
    and chunk reuse (runs of at least `reuse_min_tokens` moved into place; 0 turns it off) for requests
    whose history moved, or for every request with `always`.

    `prepare` runs for each prompt just before generation matches it against the live context;
    `yield_to` says whether a reply is waiting, for a prefill to step aside."""

    def __init__(self, engine: LlamaEngine, capacity: int, reuse_min_tokens: int = 0, *, always: bool = False,
                 yield_to: Callable[[], bool] = lambda: False) -> None:
        self.engine = engine
        self.capacity = capacity
        self.reuse_min_tokens = reuse_min_tokens if engine.can_shift else 0
        self.always = always
        self.yield_to = yield_to
        self._inserts = can_insert(engine)
        self._states: OrderedDict[int, _State] = OrderedDict()
        self._ids = 0
        self._kept = np.zeros(0, dtype=np.intc)  # the live tokens a reply produced, not yet saved
        self._last_background = True  # the class of the last request that generated
        self._stepped_aside = False  # the live context is a background generation's that will start again
        self.nbytes = 0
        self.saves = 0
        self.restores = 0
        self.moves = 0  # prompts that reused chunks moved from elsewhere in a context
        self.inserted = 0  # tokens the last prompt's moves evaluated between moved chunks
        self.prefills_skipped = 0
        self.prefills_cut = 0
        self.prefill_read = 0  # tokens the last prefill evaluated

    def prepare(self, tokens: Sequence[int], flags: RequestFlags) -> bool:
        """Set up the best cached source for a request's prompt; True if the request should go on to
        generate, False for a prefill (which has read its prompt here)."""
        moves = self.always or flags.history_moved
        if flags.prefill:
            self.prefill(tokens, moves=moves)
            return False
        self.before(tokens, background=flags.background, moves=moves)
        return True

    def prefill(self, tokens: Sequence[int], *, moves: bool = False) -> None:
        """Read `tokens` into the live context unless it or a saved state already holds all but the last
        few (a prefill that arrives after the turn it prepared for has nothing left to do).

        It reads PREFILL_CHUNK tokens at a time and stops as soon as a reply is waiting (`yield_to`): what it
        read is still a cached prefix for that reply, which reads the rest itself, so a prefill running when
        the next line arrives costs that reply at most one chunk's wait."""
        prompt = np.asarray(tokens, dtype=np.intc)
        engine = self.engine
        have = max([shared_prefix(engine.tokens, prompt), *(shared_prefix(state.tokens, prompt) for state in self._states.values())])
        self.prefill_read = 0
        if have >= len(prompt) - PREFILL_SLACK:
            self.prefills_skipped += 1
            return
        self.before(tokens, moves=moves)  # a prefill's context is kept like a reply's
        start = min(shared_prefix(engine.tokens, prompt), len(prompt) - 1)
        engine.rewind(start)
        for at in range(start, len(prompt), PREFILL_CHUNK):
            if self.yield_to():
                self.prefills_cut += 1
                break
            engine.eval(prompt[at:at + PREFILL_CHUNK].tolist())
        engine.settle()
        self.prefill_read = engine.n_tokens - start + self.inserted

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

    def before(self, tokens: Sequence[int], *, background: bool = False, moves: bool = False) -> None:
        """Save the live reply context if this prompt would lose it, then set up the best source of
        reused tokens (the live context or a saved state) and move its reusable chunks into place."""
        prompt = np.asarray(tokens, dtype=np.intc)
        min_tokens = self.reuse_min_tokens if moves else 0
        anchor = first_turn_end(self.engine, prompt) if min_tokens else 0

        def plan(cached: npt.NDArray[np.intc]) -> Plan:
            return plan_reuse(cached, prompt, min_tokens, inserts=self._inserts, anchor=anchor)

        live_plan = self._save_what_is_lost(plan)
        self._last_background = background
        best, best_plan = self._best_state(plan, live_plan)
        if best is not None and not self._restore(best):
            return
        self._move(prompt, best_plan)

    def _save_what_is_lost(self, plan: Callable[[npt.NDArray[np.intc]], Plan]) -> Plan:
        """Save the live context's reply tokens that the prompt's plan would drop; the plan on what is left."""
        live = self.engine.tokens
        if not self._last_background or self._stepped_aside:
            self._kept = live.copy()
        live_plan = plan(live)
        keep = shared_prefix(self._kept, live)
        if self.capacity and keep - min(keep, _reach(live_plan)) >= MIN_LOSS:
            self._save(keep, once=self._stepped_aside)
            self._kept = self._kept[:0]
            live_plan = plan(self.engine.tokens)
        self._stepped_aside = False
        return live_plan

    def _best_state(self, plan: Callable[[npt.NDArray[np.intc]], Plan], live_plan: Plan) -> tuple[int | None, Plan]:
        """The saved state worth restoring instead of the live context (None: none is) and its plan."""
        best, best_plan = None, live_plan
        # A stepped-aside job's own context first: on a tie (another state holds the same prompt) it is the one
        # to use up.
        for key, state in sorted(self._states.items(), key=lambda item: not item[1].once):
            candidate = plan(state.tokens)
            if (candidate.reused > best_plan.reused
                    and candidate.reused - live_plan.reused >= MIN_GAIN + RESTORE_COST * len(state.tokens)):
                best, best_plan = key, candidate
        return best, best_plan

    def _move(self, prompt: npt.NDArray[np.intc], plan: Plan) -> None:
        """Move the plan's chunks into place; on failure, clear the context so the prompt is read in full."""
        self.inserted = 0
        if not plan.chunks:
            return
        try:
            apply_plan(self.engine, prompt, plan)
        except Exception as exc:  # correctness first: read the whole prompt instead
            log.warning("could not move reused KV cells (%s); evaluating the prompt instead", exc)
            self.engine.clear()
            return
        self.inserted = plan.end - plan.reused  # new tokens decoded between moved chunks
        self.moves += 1

    def _save(self, n: int, once: bool = False) -> None:
        """Keep the first `n` live tokens' KV cells (the cells after them are dropped from the context)."""
        self.engine.truncate(n)
        data = self.engine.save_seq()
        if data is None:
            log.warning("could not save a KV state of %d tokens", n)
            return
        state = _State(self.engine.tokens.copy(), data, once)
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
        state = self._states[key]
        self._states.move_to_end(key)
        if not self.engine.restore_seq(state.data, state.tokens):
            log.warning("could not restore a KV state of %d tokens; evaluating the prompt instead", len(state.tokens))
            self._drop(key)
            return False
        self.restores += 1
        if state.once:
            self._drop(key)
        return True

    def _drop(self, key: int) -> None:
        self.nbytes -= self._states.pop(key).nbytes
