"""The scripted provider: deterministic replies, latency and failures on demand. For tests and demos
(never the user's default). Also the smallest complete example of a provider.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncIterator

from pydantic import Field

from tobio.providers.base import ChatRequest, Chunk, Provider, ProviderConfig, ProviderError

_WORD = re.compile(r"\w+")


class ScriptedProviderConfig(ProviderConfig):
    """Replies cycle through `replies`; `{last}` is the last user message. Failures come first."""

    replies: list[str] = Field(default_factory=lambda: ["You said: {last}"])
    latency_s: float = Field(0.0, ge=0, description="wait before the first token")
    token_delay_s: float = Field(0.0, ge=0, description="wait between streamed words")
    fail_first: int = Field(0, ge=0, description="the first N calls fail")
    fail_every: int = Field(0, ge=0, description="every Nth call fails (0: never)")
    fail_retryable: bool = Field(True, description="whether those failures look like 5xx/timeouts")
    fail_after_words: int | None = Field(None, description="fail mid-stream after this many words")
    embed_dim: int = Field(64, ge=2)


class ScriptedProvider(Provider):
    """Deterministic stand-in for a model."""

    Config = ScriptedProviderConfig
    config: ScriptedProviderConfig

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        self.calls = 0

    def _should_fail(self) -> bool:
        cfg = self.config
        return self.calls <= cfg.fail_first or (cfg.fail_every > 0 and self.calls % cfg.fail_every == 0)

    async def stream_chat(self, request: ChatRequest, cancel: asyncio.Event) -> AsyncIterator[Chunk]:
        cfg = self.config
        self.calls += 1
        if cfg.latency_s:
            await asyncio.sleep(cfg.latency_s)
        if self._should_fail():
            raise ProviderError(f"scripted provider '{self.name}': failure on call {self.calls}", retryable=cfg.fail_retryable, status=503)
        last = next((m["content"] for m in reversed(request.messages) if m.get("role") == "user"), "")
        reply = cfg.replies[(self.calls - 1 - cfg.fail_first) % len(cfg.replies)] if cfg.replies else ""
        reply = reply.replace("{last}", str(last))
        words = re.findall(r"\S+\s*", reply)
        for i, word in enumerate(words):
            if cancel.is_set():
                return
            if cfg.fail_after_words is not None and i >= cfg.fail_after_words:
                raise ProviderError(f"scripted provider '{self.name}': connection lost mid-stream", retryable=True)
            if i and cfg.token_delay_s:
                await asyncio.sleep(cfg.token_delay_s)
            yield Chunk(text=word)
        prompt = sum(len(_WORD.findall(str(m.get("content", "")))) for m in request.messages)
        yield Chunk(prompt_tokens=prompt, completion_tokens=len(words), finish_reason="stop")

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Hashed bag of words: texts sharing words are similar, deterministically."""
        out = []
        for text in texts:
            vector = [0.0] * self.config.embed_dim
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                vector[int.from_bytes(digest[:4], "little") % self.config.embed_dim] += 1.0
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            out.append([v / norm for v in vector])
        return out

    async def count_tokens(self, model: str, text: str) -> int:
        return len(_WORD.findall(text))

    async def list_models(self) -> list[str]:
        return ["scripted"]
