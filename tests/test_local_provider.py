"""The embedded default provider on the models that ship with it: offline, no API key, no download."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.models.module import models_of

from helpers import chat_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # prove nothing reaches for a hub
    mp.setenv("TOBIO_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    mp.delenv("OPENAI_API_KEY", raising=False)
    url = f"duckdb:///{tmp_path_factory.mktemp('db') / 'local.duckdb'}"
    k = Kernel(KernelConfig(modules=["models"]), database=url).start()
    yield k
    k.close()
    mp.undo()


SYSTEM = {"role": "system", "content": "You are Tobio, a warm artificial person who loves trains. Answer briefly."}


def test_chat_turn(kernel: Kernel) -> None:
    model = models_of(kernel).get("chat-default")
    run = kernel.call(model.run([SYSTEM, {"role": "user", "content": "Hi! What is your name?"}]).wait())
    assert run.status == "completed"
    assert len(run.text.split()) >= 2
    assert run.prompt_tokens and run.prompt_tokens > 20 and run.completion_tokens and run.completion_tokens > 1


def test_streaming_yields_many_pieces(kernel: Kernel) -> None:
    model = models_of(kernel).get("chat-default")
    run = model.run([SYSTEM, {"role": "user", "content": "Tell me about steam trains."}], params={"max_tokens": 40})

    async def collect() -> list[str]:
        return [piece async for piece in run.deltas()]

    pieces = kernel.call(collect())
    assert len(pieces) >= 5
    assert "".join(pieces) == run.text
    assert run.ttft_ms is not None and run.ttft_ms < run.latency_ms


class Feeling(BaseModel):
    mood: Literal["happy", "sad", "angry", "neutral"]
    intensity: Literal[0, 0.25, 0.5, 0.75, 1]


def test_json_object_validates(kernel: Kernel) -> None:
    model = models_of(kernel).get("json-fix")
    value = kernel.call(model.json("I just won a prize and I am thrilled! How does the speaker feel?", Feeling))
    assert isinstance(value, Feeling)


def test_classification_among_labels(kernel: Kernel) -> None:
    model = models_of(kernel).get("classify")
    label = kernel.call(model.classify("I love this, it is wonderful!", ["positive", "negative", "neutral"],
                                       instruction="What is the sentiment of the text?"))
    assert label in ("positive", "negative", "neutral")


def test_embedding_has_the_right_size(kernel: Kernel) -> None:
    vectors = kernel.call(models_of(kernel).get("embed").embed(["I love trains", "Locomotives are great", "Stock markets fell"]))
    assert [len(v) for v in vectors] == [384, 384, 384]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731 - normalised vectors
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])


def test_token_count_uses_the_models_tokenizer(kernel: Kernel) -> None:
    model = models_of(kernel).get("chat-default")
    assert kernel.call(model.count_tokens("Hello there, trains!")) == 5


def test_each_speakers_prompt_is_restored_from_the_kv_cache(kernel: Kernel) -> None:
    """Two agents take turns on one model: each one's evaluated prompt comes back from the RAM cache
    instead of being read again, and the run records how much was reused."""
    model = models_of(kernel).get("chat-default")
    tobio = [SYSTEM, {"role": "user", "content": "Hi! Tell me about the night train to the coast, please."}]
    mara = [{"role": "system", "content": "You are Mara, a retired train conductor with many stories."},
            {"role": "user", "content": "Good evening, Mara. How was the platform today?"}]
    params = {"max_tokens": 8, "temperature": 0.0}
    first = kernel.call(model.run(tobio, params=params).wait())
    kernel.call(model.run(mara, params=params).wait())  # evicts tobio's tokens from the live context
    again = kernel.call(model.run([*tobio, {"role": "assistant", "content": first.text},
                                   {"role": "user", "content": "And the dining car?"}], params=params).wait())
    assert again.prompt_tokens and again.cached_tokens is not None
    assert again.cached_tokens >= 0.6 * again.prompt_tokens, (again.cached_tokens, again.prompt_tokens)
    kernel.call(kernel.flush())
    stored = dict(kernel.run(f"run show {again.id}").rows)
    assert stored["cached_tokens"] == again.cached_tokens
    assert "cached" in kernel.run("run ls").columns


PARAMS = {"max_tokens": 8, "temperature": 0.0, "seed": 1}


def agent(name: str, line: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"You are {name}, who works on the night train and tells short stories."},
            {"role": "user", "content": line}]


def test_a_restored_state_answers_like_a_fresh_evaluation(kernel: Kernel) -> None:
    """The KV state saved when another speaker took the context gives the same greedy reply as
    evaluating the whole prompt again, and the run counts the restored prefix as cached."""
    model = models_of(kernel).get("chat-default")
    tobio = agent("Tobio", "Hi! Tell me about the night train to the coast, please.")
    first = kernel.call(model.run(tobio, params=PARAMS).wait())
    kernel.call(model.run(agent("Mara", "Good evening. How was the platform today?"), params=PARAMS).wait())
    states = chat_model(kernel).states
    assert states is not None
    restores = states.restores
    follow_up = [*tobio, {"role": "assistant", "content": first.text}, {"role": "user", "content": "And the dining car?"}]
    restored = kernel.call(model.run(follow_up, params=PARAMS).wait())
    assert states.restores == restores + 1
    assert restored.prompt_tokens and restored.cached_tokens
    assert restored.cached_tokens >= 0.6 * restored.prompt_tokens, (restored.cached_tokens, restored.prompt_tokens)
    chat_model(kernel).forget()
    fresh = kernel.call(model.run(follow_up, params=PARAMS).wait())
    assert fresh.cached_tokens == 0
    assert fresh.text == restored.text


def test_alternating_speakers_each_get_their_prefix_back(kernel: Kernel) -> None:
    """Two agents with growing histories take turns: from their second turn on, each one's whole previous
    prompt (and its reply) comes back instead of being read again."""
    model = models_of(kernel).get("chat-default")
    chats = [agent("Tobio", "Where does the night train stop first?"), agent("Mara", "What did the guard say?")]
    previous = [0, 0]
    for turn in range(3):
        for i, chat in enumerate(chats):
            run = kernel.call(model.run(chat, params=PARAMS).wait())
            assert run.prompt_tokens and run.cached_tokens is not None
            if turn:
                assert run.cached_tokens >= previous[i], (turn, run.cached_tokens, run.prompt_tokens, previous[i])
            previous[i] = run.prompt_tokens
            chat += [{"role": "assistant", "content": run.text}, {"role": "user", "content": f"Go on, part {turn + 2}."}]


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def test_saved_states_hold_kv_cells_only(kernel: Kernel) -> None:
    """Saving a state costs its KV cells (about 1 MB here), not also a copy of the logits buffer (9 MB here,
    100 MB from 512 tokens on), which LlamaRAMCache kept with each state without counting it."""
    model = models_of(kernel).get("chat-default")
    names = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus"]
    kernel.call(model.run(agent(names[-1], "Hello!"), params=PARAMS).wait())
    before = rss_mb()
    for name in names:
        kernel.call(model.run(agent(name, "Hello! Which carriage is yours?"), params=PARAMS).wait())
    grown = rss_mb() - before
    assert grown < 3 * len(names), grown  # measured: 8-11 MB here, 77 MB with LlamaRAMCache
    assert len(chat_model(kernel).states) >= len(names)


def test_the_store_stays_within_its_bound(kernel: Kernel) -> None:
    """With room for two states, many speakers in turn leave at most two, and the byte count covers all held."""
    import sys

    from tobio.providers.kv_states import ENTRY_OVERHEAD

    model = models_of(kernel).get("chat-default")
    states = chat_model(kernel).states
    assert states is not None
    capacity = states.capacity
    chat_model(kernel).forget()
    try:
        for name in ["Ada", "Bo"]:
            kernel.call(model.run(agent(name, "Hello! Which carriage is yours?"), params=PARAMS).wait())
        assert len(states) == 1
        states.capacity = int(2.5 * states.nbytes)  # the speakers' prompts are the same length
        for name in ["Cy", "Di", "Ed", "Flo", "Gus"]:
            kernel.call(model.run(agent(name, "Hello! Which carriage is yours?"), params=PARAMS).wait())
            held = list(states._states.values())
            assert states.nbytes <= states.capacity
            assert states.nbytes == sum(len(s.data) + s.tokens.nbytes + ENTRY_OVERHEAD for s in held)
            assert all(sys.getsizeof(s.data) + sys.getsizeof(s.tokens) + sys.getsizeof(s) <= len(s.data) + s.tokens.nbytes + ENTRY_OVERHEAD for s in held)
        assert len(states) == 2
    finally:
        states.capacity = capacity


def test_background_work_steps_aside_for_a_reply_and_loses_nothing(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `background_steps_aside`, a reply that finds a summary mid-generation does not wait for it: the
    summary stops, the reply goes, and the summary starts again after it; its text is handed over once, whole."""
    import asyncio

    model = models_of(kernel).get("chat-default")
    monkeypatch.setattr(model.provider, "config", model.provider.config.model_copy(update={"background_steps_aside": True}))
    story = [SYSTEM, {"role": "user", "content": "Tell me a long story about a night train crossing the mountains."}]
    params = {"max_tokens": 160, "temperature": 0.0}
    whole = kernel.call(model.run(story, params=params).wait())
    loaded = chat_model(kernel)
    before = loaded.stepped_aside

    async def reply_during_a_summary() -> tuple[Any, Any, float, float]:
        loop = asyncio.get_running_loop()
        made: list[Any] = []

        async def summarise() -> None:  # a run made inside a background job is background work
            made.append(model.run(story, params=params))
            pieces.extend([piece async for piece in made[0].deltas()])

        job = kernel.tasks.spawn(summarise(), name="test:summary", kind="job")
        while not made or made[0].status != "in_progress":
            await asyncio.sleep(0.01)
        summary = made[0]
        assert summary.request.background
        await asyncio.sleep(1.0)  # well into its 160 tokens (~4 s on 2 cores)
        reply = await model.run([SYSTEM, {"role": "user", "content": "Hi!"}], params={"max_tokens": 8}).wait()
        replied = loop.time()
        await job.task
        return summary, reply, replied, loop.time()

    pieces: list[str] = []
    summary, reply, replied, summarised = kernel.call(reply_during_a_summary())
    assert loaded.stepped_aside == before + 1
    assert replied < summarised and reply.ttft_ms is not None and reply.ttft_ms < 1000
    # Handed over whole, once: the stopped attempt sent nothing, so nothing is doubled or cut.
    assert summary.status == "completed" and pieces == [summary.text]
    assert summary.completion_tokens == whole.completion_tokens == 160 or summary.finish_reason == "stop"
    # ... and its restart restored the prompt it had read (kept for it when it stepped aside), once
    assert summary.cached_tokens >= summary.prompt_tokens - 2, (summary.prompt_tokens, summary.cached_tokens)
    assert loaded.states is not None and not any(state.once for state in loaded.states._states.values())
