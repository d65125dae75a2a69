"""Prefill: after a reply, the next turn's opening is read into the embedded model's cache in the
background, so the next reply reads only its per-turn notes and new line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.models.module import models_of

from helpers import chat_model, kv_states

pytestmark = pytest.mark.slow

PARAMS = {"max_tokens": 12, "temperature": 0.0, "seed": 1}
PERSONA = {"role": "system", "content": "You are Ada, a retired ship's engineer who lives by the sea with her dog Biscuit."}
HISTORY = [PERSONA,
           {"role": "user", "content": "Hello Ada, how were the boats this morning?"},
           {"role": "assistant", "content": "Grey sea, three trawlers out before dawn, and Biscuit barking at gulls."},
           {"role": "user", "content": "Did you fix the winch on the blue one?"},
           {"role": "assistant", "content": "I did. A seized bearing, nothing a bit of grease and patience could not cure."}]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TOBIO_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    k = Kernel(KernelConfig(modules=["models"]), database=f"duckdb:///{tmp_path_factory.mktemp('db') / 'p.duckdb'}").start()
    yield k
    k.close()
    mp.undo()


def reset(kernel: Kernel) -> None:
    chat_model(kernel).forget()


def notes_and_line(line: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Your mood right now: content. You are Ada."}, {"role": "user", "content": line}]


def test_the_next_reply_reads_only_what_follows_the_prefilled_opening(kernel: Kernel) -> None:
    model = models_of(kernel).get("chat-default")
    reset(kernel)
    first = kernel.call(model.run([*HISTORY, *notes_and_line("What will you do this afternoon?")], params=PARAMS).wait())
    opening = [*HISTORY, {"role": "user", "content": "What will you do this afternoon?"},
               {"role": "assistant", "content": first.text}]
    run = model.prefill(opening, params=PARAMS)
    assert run is not None
    prefill = kernel.call(run.wait())
    assert prefill.status == "completed" and prefill.text == "" and prefill.completion_tokens == 0
    assert prefill.prompt_tokens and 0 < prefill.cached_tokens < prefill.prompt_tokens  # read the last exchange
    following = notes_and_line("And tomorrow?")
    after = kernel.call(model.run([*opening, *following], params=PARAMS).wait())
    assert after.cached_tokens >= prefill.prompt_tokens - 4, (after.cached_tokens, prefill.prompt_tokens)
    engine = chat_model(kernel).engine
    new = sum(len(engine.tokenize(m["content"])) + 5 for m in following)
    assert after.prompt_tokens - after.cached_tokens <= new + 4
    kernel.call(kernel.flush())
    purposes = dict(kernel.run(f"run show {prefill.id}").rows)
    assert purposes["purpose"] == "prefill"


def test_a_prefill_that_arrives_after_its_turn_does_nothing(kernel: Kernel) -> None:
    """Replies go before background work, so a prefill can find its turn already answered: the live
    context already holds its opening, and it leaves that context (the newer reply's) alone."""
    model = models_of(kernel).get("chat-default")
    reset(kernel)
    first = kernel.call(model.run([*HISTORY, *notes_and_line("Where is Biscuit?")], params=PARAMS).wait())
    opening = [*HISTORY, {"role": "user", "content": "Where is Biscuit?"}, {"role": "assistant", "content": first.text}]
    kernel.call(model.run([*opening, *notes_and_line("Is he asleep?")], params=PARAMS).wait())
    states = kv_states(kernel)
    skipped, held = states.prefills_skipped, chat_model(kernel).engine.n_tokens
    run = model.prefill(opening, params=PARAMS)
    assert run is not None
    late = kernel.call(run.wait())
    assert states.prefills_skipped == skipped + 1
    assert chat_model(kernel).engine.n_tokens == held
    assert late.status == "completed" and late.prompt_tokens and late.prompt_tokens - late.cached_tokens <= 1


def test_a_provider_with_no_cache_of_its_own_is_not_asked(kernel: Kernel) -> None:
    from tobio.config.schema import ModelSpec
    from tobio.models.bundle import Model
    from tobio.providers.base import Provider, ProviderConfig

    server = Provider("server", ProviderConfig(type="openai"))  # a server's prefix cache fills itself
    bundle = Model(kernel, "remote", ModelSpec(provider="server", model="m", purpose="chat"), server)
    assert bundle.prefill(HISTORY) is None


def test_a_prefill_steps_aside_for_a_waiting_reply(kernel: Kernel) -> None:
    """A prefill reads a chunk at a time and stops once a reply is queued; what it read stays a cached
    prefix for that reply."""
    from tobio.providers.kv_states import PREFILL_CHUNK

    model = models_of(kernel).get("chat-default")
    reset(kernel)
    states = kv_states(kernel)
    long_story = " ".join(["The tide came in over the shingle and the boats knocked against the quay."] * 12)
    opening = [*HISTORY, {"role": "user", "content": "Tell me a long story."}, {"role": "assistant", "content": long_story}]
    checks = iter([False, True])  # a reply arrives after the first chunk
    reply_waiting = states.yield_to
    states.yield_to = lambda: next(checks, True)
    cut = states.prefills_cut
    try:
        run = model.prefill(opening, params=PARAMS)
        assert run is not None
        prefill = kernel.call(run.wait())
    finally:
        states.yield_to = reply_waiting
    assert states.prefills_cut == cut + 1 and states.prefill_read == PREFILL_CHUNK
    assert prefill.status == "completed" and prefill.prompt_tokens - prefill.cached_tokens == PREFILL_CHUNK
    assert prefill.prompt_tokens > 300  # the whole opening's count, though only one chunk of it was read
    reply = kernel.call(model.run([*opening, *notes_and_line("Go on.")], params=PARAMS).wait())
    assert reply.cached_tokens >= PREFILL_CHUNK - 1  # the chunk read (the context was empty before it)
    assert reply.status == "completed"
