"""Providers: model back ends behind one small interface.

Back ends speak Chat Completions (streaming, JSON schema, embeddings); Tobio keeps the retired
Assistants *shape* as its own record: a Run on a thread produces Steps. A provider only has to turn a
`ChatRequest` into an async stream of `Chunk`s; recording, timing, retries at the run level,
cancellation and JSON repair live in tobio/models/runs.py and tobio/models/bundle.py, once for every provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from tobio.config.schema import Frozen
from tobio.errors import TobioError


class ProviderError(TobioError):
    """A provider call failed; `retryable` says whether trying again may help (429, 5xx, timeouts)."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ProviderConfig(Frozen):
    """A provider entry in kernel.yaml / models.yaml `providers:`; types add their own fields."""

    type: str = Field("", description="the provider type, as registered (the entry point's or PROVIDER_TYPE key)")
    description: str = ""
    timeout_s: float = Field(120.0, gt=0, description="longest wait for a reply (or between streamed chunks)")
    max_retries: int = Field(3, ge=0, description="retries on 429/5xx/timeouts, with exponential backoff")


@dataclass(frozen=True)
class ChatRequest:
    """What a run asks of a provider: Chat Completions messages plus sampling parameters."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, top_p, stop, seed, ...
    json_schema: dict[str, Any] | None = None  # constrain the reply to this JSON schema when supported
    tools: list[dict[str, Any]] | None = None  # Chat Completions tool definitions
    background: bool = False  # nobody waits on it (a summary, a reflection): a local model serves it after replies
    # Only read the prompt, so that a later request extending it finds it cached; no reply is generated.
    # Sent after a reply with the next turn's opening (see Model.prefill); providers without a cache they
    # control skip it (supports_prefill).
    prefill: bool = False
    # The prompt's history moved since the last request on its thread (a new summary replaced older
    # messages): a provider that can may reuse what it read of it at the new positions (kv_reuse.py).
    history_moved: bool = False


@dataclass(frozen=True)
class Chunk:
    """One piece of a streamed reply: text, a finished tool call, usage, or the finish reason."""

    text: str = ""
    tool_call: dict[str, Any] | None = None  # {"id", "name", "arguments": str}
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # of prompt_tokens, how many came from a cache instead of being evaluated
    finish_reason: str | None = None


class Provider:
    """Base class. Subclasses set `Config` and implement `stream_chat` (and `embed`). The type name is
    written once: where the class is registered (its `tobio.providers` entry point, or PROVIDER_TYPE)."""

    Config: ClassVar[type[ProviderConfig]] = ProviderConfig
    supports_json_schema: ClassVar[bool] = False  # constrained decoding available
    supports_tools: ClassVar[bool] = False
    retries_itself: ClassVar[bool] = False  # the client library already retries 429/5xx (runs must not again)
    supports_prefill: ClassVar[bool] = False  # reads a prompt ahead into a cache it keeps (ChatRequest.prefill)

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config

    def stream_chat(self, request: ChatRequest, cancel: asyncio.Event) -> AsyncIterator[Chunk]:
        """Yield chunks of the reply; stop promptly once `cancel` is set. Raise ProviderError on failure."""
        raise NotImplementedError

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """One vector per text."""
        raise ProviderError(f"provider '{self.name}' ({self.config.type}) does not do embeddings")

    async def count_tokens(self, model: str, text: str) -> int:
        """Tokens in `text` by the model's own tokenizer (rough estimate when the back end has none)."""
        return max(1, len(text) // 4)

    async def list_models(self) -> list[str]:
        """Model names this provider can serve (for `provider ls` and completion)."""
        return []

    async def close(self) -> None:
        """Release connections or loaded weights."""

    def describe(self) -> dict[str, Any]:
        """What `provider ls` shows; never secrets."""
        return {"type": self.config.type, "description": self.config.description}
