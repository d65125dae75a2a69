"""Chunk reuse (`kv_reuse`, by default only after a new summary): tokens a prompt shares with the live
context at other positions are moved, not read again.

The planning tests need no model; the rest run the embedded model the way a chat's turns use it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.models.module import models_of
from tobio.providers.kv_reuse import Chunk, plan_reuse
from tobio.providers.model_host import ChatModel

from helpers import chat_model, kv_states

pytestmark = pytest.mark.slow


def ids(*parts: range | list[int]) -> np.ndarray:
    return np.asarray([t for part in parts for t in part], dtype=np.intc)


PERSONA, HISTORY, NOTES, EXCHANGE, NEW_NOTES, LINE = (
    range(0, 40), range(100, 300), range(1000, 1060), range(2000, 2050), range(3000, 3070), range(4000, 4012))


def test_the_last_exchange_moves_in_front_of_the_new_notes() -> None:
    cached = ids(PERSONA, HISTORY, NOTES, EXCHANGE)
    prompt = ids(PERSONA, HISTORY, EXCHANGE, NEW_NOTES, LINE)
    plan = plan_reuse(cached, prompt, 16)
    assert plan.prefix == 240
    assert plan.chunks == [Chunk(at=240, src=300, size=50)]
    assert plan.reused == 290 and plan.end == 290


def test_history_after_a_new_summary_moves_to_follow_it() -> None:
    old_summary, new_summary, dropped = range(500, 520), range(600, 650), range(700, 800)
    cached = ids(PERSONA, old_summary, dropped, HISTORY, NOTES, EXCHANGE)
    prompt = ids(PERSONA, new_summary, HISTORY, EXCHANGE, NEW_NOTES, LINE)
    plan = plan_reuse(cached, prompt, 16)
    assert plan.prefix == 40
    assert plan.chunks == [Chunk(at=90, src=160, size=200), Chunk(at=290, src=420, size=50)]
    # Without a second sequence to park chunks in, nothing can be inserted before a chunk.
    assert plan_reuse(cached, prompt, 16, inserts=False).chunks == []


def test_short_runs_and_runs_that_would_move_later_stay_unused() -> None:
    cached = ids(PERSONA, range(900, 910), HISTORY)
    # A 10-token run is below the threshold; HISTORY would have to move right (to a later position).
    prompt = ids(PERSONA, range(900, 910), range(5000, 5100), HISTORY)
    plan = plan_reuse(cached, prompt, 16)
    assert plan.prefix == 50 and plan.chunks == []
    assert plan_reuse(cached, ids(PERSONA, HISTORY), 16).chunks == [Chunk(at=40, src=50, size=200)]
    assert plan_reuse(cached, ids(PERSONA, HISTORY), 0).chunks == []


def test_chunks_keep_their_order() -> None:
    """A run found earlier in the old context than the previous chunk is not used (cells move left only,
    in order), so the plan never needs a cell in two places."""
    a, b = range(100, 140), range(200, 240)
    plan = plan_reuse(ids(PERSONA, b, NOTES, a), ids(PERSONA, a, b), 16)
    assert [c.src for c in plan.chunks] == sorted(c.src for c in plan.chunks)
    assert all(c.at <= c.src for c in plan.chunks)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TOBIO_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    # Its own provider and n_ctx, so its own model instance: the parking sequence is set up at load.
    config = KernelConfig(modules=["models"], providers={"moving": {"type": "local", "n_ctx": 2048, "kv_reuse": "always", "kv_reuse_min_tokens": 32}},
                          models={"chat-moving": {"provider": "moving", "model": "smollm2", "purpose": "chat"}})
    k = Kernel(config, database=f"duckdb:///{tmp_path_factory.mktemp('db') / 'r.duckdb'}").start()
    yield k
    k.close()  # frees the provider's models
    mp.undo()


PARAMS = {"max_tokens": 12, "temperature": 0.0, "seed": 1}
PERSONA_MSG = {"role": "system", "content": "You are Ada, a retired ship's engineer who lives by the sea with her dog "
                                            "Biscuit. You speak plainly and warmly."}


def exchanges(n: int, start: int = 0) -> list[dict[str, str]]:
    out = []
    for i in range(start, start + n):
        out += [{"role": "user", "content": f"Tell me about thing {i} you remember from the harbour."},
                {"role": "assistant", "content": f"Thing {i}: the gulls, the tar, and rope burns on my hands."}]
    return out


def notes(mood: str, fact: str) -> dict[str, str]:
    return {"role": "system", "content": f"Your mood right now: {mood}. Remember: {fact}"}


def fresh(kernel: Kernel, reuse: int) -> ChatModel:
    """The loaded model with an empty context and store, chunk reuse set to `reuse` tokens."""
    model = chat_model(kernel, "chat-moving")
    model.forget()
    kv_states(kernel, "chat-moving").reuse_min_tokens = reuse
    return model


def tokens(kernel: Kernel, messages: list[dict[str, str]]) -> int:
    """Tokens the chat template gives these messages."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return len(chat_model(kernel, "chat-moving").engine.tokenize(text))


def two_turns(kernel: Kernel, first: list[dict[str, str]], second: list[dict[str, str]], **then: Any) -> Any:
    """Run `first`, then `second` (with `then`'s run options) with the first reply in place of its `REPLY`
    message's content."""
    model = models_of(kernel).get("chat-moving")
    reply = kernel.call(model.run(first, params=PARAMS).wait()).text
    second = [{**m, "content": reply} if m["content"] == REPLY else m for m in second]
    return kernel.call(model.run(second, params=PARAMS, **then).wait())


REPLY = "(the first turn's reply)"


NEW_SUMMARY = {"role": "system", "content": "Earlier: they talked about boats, a storm in 1987, and how Biscuit "
                                            "steals socks from the washing line."}


def summary_turns() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Two turns on either side of a new summary (NEW_SUMMARY), which replaces four old exchanges."""
    old = {"role": "system", "content": "Earlier: the user asked about boats and Ada told of a storm in 1987."}
    ask = {"role": "user", "content": "What is the weather like?"}
    first = [PERSONA_MSG, old, *exchanges(8), ask]
    second = [PERSONA_MSG, NEW_SUMMARY, *exchanges(4, start=4), ask, {"role": "assistant", "content": REPLY},
              {"role": "user", "content": "Shall we walk Biscuit?"}]
    return first, second


def test_a_turn_reads_only_its_notes_and_new_line(kernel: Kernel) -> None:
    """The previous turn's notes sat before the last exchange; the next turn moves the exchange up and
    reads only what is new. With reuse off, the exchange is read again."""
    history = [PERSONA_MSG, *exchanges(4)]
    ask = {"role": "user", "content": "What did you eat today?"}
    reply = {"role": "assistant", "content": REPLY}
    first = [*history, notes("calm", "the user likes tea."), ask]
    second = [*history, ask, reply, notes("cheerful", "the user has a cat called Pip."),
              {"role": "user", "content": "And yesterday?"}]
    new = tokens(kernel, second[-2:]) + 3  # the notes and the line, plus the assistant cue
    try:
        fresh(kernel, 0)
        without = two_turns(kernel, first, second)
        fresh(kernel, 16)
        moves = kv_states(kernel, "chat-moving").moves
        with_reuse = two_turns(kernel, first, second)
    finally:
        fresh(kernel, 32)
    assert kv_states(kernel, "chat-moving").moves == moves + 1
    assert abs(with_reuse.prompt_tokens - without.prompt_tokens) <= 1  # a stop token is counted or not
    assert with_reuse.prompt_tokens - with_reuse.cached_tokens <= new + 8, (with_reuse.cached_tokens, new)
    assert without.prompt_tokens - without.cached_tokens >= new + tokens(kernel, [ask]) + 8
    assert with_reuse.text.strip()


def test_a_new_summary_reads_only_itself_and_the_new_line(kernel: Kernel) -> None:
    """A summary replaces four old exchanges: the kept history moves up behind it; only the summary and
    the new line are read, and the context holds exactly the prompt afterwards (one sequence, no gaps)."""
    first, second = summary_turns()
    try:
        model = fresh(kernel, 32)
        run = two_turns(kernel, first, second)
        with model.lock:
            engine = model.engine
            assert engine.seq_positions(0) == (0, engine.n_tokens - 1)
            assert engine.seq_positions(1)[1] == -1  # nothing left parked
    finally:
        fresh(kernel, 32)
    read = run.prompt_tokens - run.cached_tokens
    assert read <= tokens(kernel, [NEW_SUMMARY]) + tokens(kernel, second[-2:]) + 12, (read, run.prompt_tokens)
    assert run.status == "completed" and run.text.strip()


def test_by_default_cells_move_only_for_a_history_a_summary_moved(kernel: Kernel) -> None:
    """`kv_reuse: after_summary`, the default: a request moves chunks only when it says its history moved
    (the persona agent says so on the turn after a new summary, and for that turn's prefill)."""
    first, second = summary_turns()
    states = kv_states(kernel, "chat-moving")
    try:
        fresh(kernel, 32)
        states.always = False
        moves = states.moves
        unsaid = two_turns(kernel, first, second)
        assert states.moves == moves
        fresh(kernel, 32)
        said = two_turns(kernel, first, second, history_moved=True)
        assert states.moves == moves + 1
    finally:
        states.always = True
        fresh(kernel, 32)
    assert said.prompt_tokens - said.cached_tokens < (unsaid.prompt_tokens - unsaid.cached_tokens) / 2


def test_moved_cells_predict_like_a_fresh_read(kernel: Kernel) -> None:
    """The approximation is small: after a summary turn's moves, the next-token distribution is close
    to evaluating the whole prompt afresh (same most likely token, KL divergence well under 0.5)."""
    from tobio.providers.kv_reuse import apply_plan

    model = chat_model(kernel, "chat-moving")
    with model.lock:
        engine = model.engine
        text = ("<|im_start|>system\n" + PERSONA_MSG["content"] + "<|im_end|>\n<|im_start|>system\nEarlier: {s}<|im_end|>\n"
                + "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in exchanges(6)))
        old = text.format(s="they spoke of boats.")
        new = text.format(s="they spoke of boats, storms, and Biscuit's socks.").replace(
            "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in exchanges(2)), "")
        new += "<|im_start|>user\nWhat did you eat today?<|im_end|>\n<|im_start|>assistant\n"
        old_ids, new_ids = (np.asarray(engine.tokenize(t), dtype=np.intc) for t in (old, new))
        try:
            engine.reset()
            engine.eval(old_ids.tolist())
            plan = plan_reuse(engine.tokens.copy(), new_ids, 32)
            assert plan.chunks and plan.chunks[0].at > plan.prefix  # an insert, then a move
            apply_plan(engine, new_ids, plan)
            engine.eval(new_ids[plan.end:].tolist())
            moved = engine.last_logits()
            engine.reset()
            engine.eval(new_ids.tolist())
            read = engine.last_logits()
        finally:
            engine.reset()
            kv_states(kernel, "chat-moving").clear()
    p, q = (np.exp(x - x.max()) / np.exp(x - x.max()).sum() for x in (read, moved))
    kl = float((p * np.log(p / q)).sum())
    assert moved.argmax() == read.argmax()
    assert kl < 0.5, kl


def test_cells_never_move_between_two_personas_conversations() -> None:
    """Another agent's context shares the history's words but not the persona: nothing moves."""
    other_persona = range(50, 90)
    cached = ids(other_persona, HISTORY, EXCHANGE)
    prompt = ids(PERSONA, HISTORY, EXCHANGE, LINE)
    assert plan_reuse(cached, prompt, 16, anchor=len(PERSONA)).chunks == []
    assert plan_reuse(ids(PERSONA, NOTES, HISTORY), prompt, 16, anchor=len(PERSONA)).chunks  # its own: moved


def test_a_failed_move_reads_the_whole_prompt_instead(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """If moving cells fails halfway (a decode error between chunks), the turn still answers: the
    context is cleared, every sequence emptied, and the prompt read in full."""
    def refuse(*_: object) -> None:
        raise RuntimeError("llama_decode returned 1")

    old = {"role": "system", "content": "Earlier: the user asked about boats and Ada told of a storm in 1987."}
    new = {"role": "system", "content": "Earlier: boats, a storm in 1987, and Biscuit stealing socks."}
    ask = {"role": "user", "content": "What is the weather like?"}
    first = [PERSONA_MSG, old, *exchanges(8), ask]
    second = [PERSONA_MSG, new, *exchanges(4, start=4), ask, {"role": "assistant", "content": REPLY},
              {"role": "user", "content": "Shall we walk Biscuit?"}]
    model = fresh(kernel, 32)
    monkeypatch.setattr(model.engine, "decode_at", refuse)
    run = two_turns(kernel, first, second)
    monkeypatch.undo()
    assert run.status == "completed" and run.text.strip()
    assert run.cached_tokens == 0
    with model.lock:
        assert model.engine.seq_positions(1)[1] == -1
        assert model.engine.seq_positions(0)[0] == 0
