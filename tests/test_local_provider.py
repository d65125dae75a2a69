"""The embedded default provider on the models that ship with it: offline, no API key, no download."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import BaseModel

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.models.module import models_of


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
