"""The `openai` provider: any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, ...).

It speaks Chat Completions and Embeddings through the official SDK. Retries with backoff on 429/5xx and
connection errors before the first token are the SDK's (`max_retries`); `timeout_s` bounds the wait for
the reply and for each streamed chunk. Every SDK exception becomes a one-line `ProviderError`, and the
API key (a `SecretStr`) never reaches logs, `describe()`, reprs or error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import openai
from openai.resources.chat.completions import AsyncCompletions
from pydantic import Field, SecretStr

from tobio.providers.base import ChatRequest, Chunk, Provider, ProviderConfig, ProviderError

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

log = logging.getLogger(__name__)
T = TypeVar("T")

# Chat Completions arguments the SDK knows; other `params` (top_k, repeat_penalty, min_p, ...) go in
# `extra_body`, which servers such as llama.cpp and vLLM read.
_OWN_ARGS = {"self", "messages", "model", "stream", "stream_options", "tools", "extra_headers", "extra_query",
             "extra_body", "timeout"}
SDK_ARGS = frozenset(inspect.signature(AsyncCompletions.create).parameters) - _OWN_ARGS
NO_KEY = "no-key"  # the SDK insists on a key; local servers ignore this one


class _End(enum.Enum):
    """The end of a stream, or a wait cut short: a sentinel mypy can narrow away."""

    END = enum.auto()


_END = _End.END


class OpenAIConfig(ProviderConfig):
    """An `openai` provider entry: where the server is and how to authenticate."""

    base_url: str | None = Field(None, description="e.g. http://127.0.0.1:8080/v1; empty means api.openai.com")
    api_key: SecretStr | None = Field(None, description="write ${ENV_VAR}; never stored or shown")
    organization: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False, description="extra HTTP headers")
    json_mode: Literal["auto", "json_schema", "json_object"] = Field(
        "auto", description="how to ask for schema output: OpenAI's json_schema, llama.cpp's json_object+schema, "
        "or auto (try json_schema, fall back once rejected)")


@dataclass
class _ToolCall:
    """A tool call being assembled from streamed deltas."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": "".join(self.arguments)}


def _cached_tokens(usage: Any) -> int | None:
    """Prompt tokens the server's prefix cache served (OpenAI and vLLM report them; others say nothing)."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return cached if isinstance(cached, int) else None


class OpenAIProvider(Provider):
    """Chat and embeddings from an OpenAI-compatible HTTP server."""

    Config = OpenAIConfig
    supports_json_schema = True
    supports_tools = True
    retries_itself = True  # the openai SDK retries with backoff itself

    def __init__(self, name: str, config: ProviderConfig) -> None:
        cfg = config if isinstance(config, OpenAIConfig) else OpenAIConfig.model_validate(config.model_dump())
        super().__init__(name, cfg)
        self.cfg = cfg  # self.config, typed
        self._client: openai.AsyncOpenAI | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._json_mode: str | None = None if self.cfg.json_mode == "auto" else self.cfg.json_mode
        self._pooling_logged = False

    # -- client ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.cfg.base_url or "https://api.openai.com/v1"

    def _key(self) -> str | None:
        key = self.cfg.api_key.get_secret_value() if self.cfg.api_key else ""
        return key or None

    def client(self) -> openai.AsyncOpenAI:
        """The SDK client, made on first use in the running loop (its connections belong to that loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # Without a key, never let the SDK read OPENAI_API_KEY for a third-party base_url.
            key = self._key() or (None if self.cfg.base_url is None else NO_KEY)
            # A client left from another (finished) loop is dropped: its connections cannot be used here.
            self._client = openai.AsyncOpenAI(
                api_key=key, base_url=self.cfg.base_url, organization=self.cfg.organization,
                default_headers=self.cfg.headers or None, timeout=self.cfg.timeout_s,
                max_retries=self.cfg.max_retries)
            self._loop = loop
        return self._client

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()

    def describe(self) -> dict[str, Any]:
        """Type, server and whether a key is set; never the key nor header values."""
        return {**super().describe(), "base_url": self.base_url, "api_key": "set" if self._key() else "not set",
                "organization": self.cfg.organization, "headers": sorted(self.cfg.headers)}

    # -- chat -----------------------------------------------------------------------------------
    async def stream_chat(self, request: ChatRequest, cancel: asyncio.Event) -> AsyncIterator[Chunk]:
        """Text chunks as they arrive, then tool calls, usage, and the finish reason as the last chunk."""
        if cancel.is_set():
            return
        waiter = asyncio.ensure_future(cancel.wait())
        stream: Any = None
        try:
            stream = await _unless(self._open(request), waiter)
            if stream is _END:
                return
            calls: dict[int, _ToolCall] = {}
            finish: str | None = None
            usage: Any = None
            chunks = aiter(stream)
            while not cancel.is_set() and (item := await _unless(anext(chunks, _END), waiter)) is not _END:
                usage = item.usage or usage
                for choice in item.choices[:1]:
                    delta = choice.delta
                    if delta.content:
                        yield Chunk(text=delta.content)
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, _ToolCall())
                        slot.id = call.id or slot.id
                        if call.function:
                            slot.name = call.function.name or slot.name
                            slot.arguments.append(call.function.arguments or "")
                    finish = choice.finish_reason or finish
            if cancel.is_set():
                return
            if finish is None:
                # llama.cpp's server ends a 200 stream early, silently, on errors and interruptions.
                raise ProviderError(f"provider '{self.name}' ({self.base_url}) stopped the reply from "
                                    f"'{request.model}' before it finished (no finish_reason; llama.cpp's server "
                                    "does this when the prompt exceeds its context or another request interrupts "
                                    "it)", retryable=True)
            for _, call in sorted(calls.items()):
                yield Chunk(tool_call=call.as_dict())
            if usage is not None:
                yield Chunk(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                            cached_tokens=_cached_tokens(usage))
            yield Chunk(finish_reason=finish)
        except openai.OpenAIError as exc:
            raise self._error(exc, request.model) from None
        finally:
            waiter.cancel()
            if stream is not None and stream is not _END:
                with contextlib.suppress(Exception):
                    await stream.close()  # a cancelled or abandoned stream must drop its connection

    async def _open(self, request: ChatRequest) -> Any:
        """Start the streamed completion; in auto JSON mode, learn once which response_format works."""
        client = self.client()
        if request.json_schema is None or self._json_mode is not None:
            return await self._create(client, request, self._json_mode or "json_schema")
        try:
            stream = await self._create(client.with_options(max_retries=0), request, "json_schema")
            self._json_mode = "json_schema"
            return stream
        except openai.APIStatusError as exc:
            if _rejects_json_schema(exc):
                log.info("provider '%s' rejects response_format json_schema; using json_object with a schema",
                         self.name)
                self._json_mode = "json_object"
            elif exc.status_code < 500 and exc.status_code not in (408, 409, 429):
                raise
        except openai.APIConnectionError:
            pass  # tried again below, with the SDK's retries and backoff
        return await self._create(client, request, self._json_mode or "json_schema")

    async def _create(self, client: openai.AsyncOpenAI, request: ChatRequest, json_mode: str) -> Any:
        args = {k: v for k, v in request.params.items() if k in SDK_ARGS}
        extra = {k: v for k, v in request.params.items() if k not in SDK_ARGS}
        if request.json_schema is not None:
            args["response_format"] = response_format(request.json_schema, json_mode)
        if request.tools:
            args["tools"] = request.tools
        return await client.chat.completions.create(
            model=request.model, messages=cast("list[ChatCompletionMessageParam]", request.messages),  # wire-format dicts
            stream=True, stream_options={"include_usage": True},
            extra_body=extra or None, **args)

    # -- embeddings and models ------------------------------------------------------------------
    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """One vector per text via /v1/embeddings; per-token vectors (llama.cpp without pooling) are mean-pooled."""
        if not texts:
            return []
        try:
            reply = await self.client().embeddings.create(model=model, input=texts, encoding_format="float")
        except openai.OpenAIError as exc:
            raise self._error(exc, model) from None
        rows = sorted(reply.data, key=lambda d: d.index)
        if len(rows) != len(texts):
            raise ProviderError(f"provider '{self.name}' returned {len(rows)} embeddings for {len(texts)} texts")
        vectors = [list(row.embedding) for row in rows]
        if any(v and isinstance(v[0], list) for v in vectors):
            if not self._pooling_logged:
                log.info("provider '%s' returns one vector per token for %r; mean-pooling them", self.name, model)
                self._pooling_logged = True
            vectors = [mean_pool(v) if v and isinstance(v[0], list) else v for v in vectors]
        return [[float(x) for x in v] for v in vectors]

    async def list_models(self) -> list[str]:
        """Model ids from /v1/models."""
        try:
            return [m.id async for m in self.client().models.list()]
        except openai.OpenAIError as exc:
            raise self._error(exc, None) from None

    async def check_model(self, model: str) -> None:
        """Fail clearly if the server does not list `model` (llama.cpp's server answers any name with its own)."""
        models = await self.list_models()
        if model not in models:
            shown = ", ".join(models[:10]) or "none"
            raise ProviderError(f"provider '{self.name}' has no model '{model}' (it serves: {shown})", status=404)

    # -- errors ---------------------------------------------------------------------------------
    def _error(self, exc: openai.OpenAIError, model: str | None) -> ProviderError:
        """One clear line for any SDK error, with the API key scrubbed out."""
        error = self._describe_error(exc, model)
        key = self._key()
        if key:
            error.args = (str(error).replace(key, "***"),)
        return error

    def _describe_error(self, exc: openai.OpenAIError, model: str | None) -> ProviderError:
        where = f"provider '{self.name}' ({self.base_url})"
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(f"{where} timed out after {self.cfg.timeout_s:g}s (timeout_s) waiting for a reply",
                                 retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            if _caused_by(exc, ConnectionRefusedError):
                return ProviderError(f"cannot connect to {where}: connection refused (is the server running?)",
                                     retryable=True)
            return ProviderError(f"lost connection to {where}: {_root_message(exc)}", retryable=True)
        if isinstance(exc, openai.APIStatusError):
            status, detail = exc.status_code, _detail(exc)
            if status == 401:
                return ProviderError(f"authentication failed for provider '{self.name}' (check its api_key)",
                                     status=status)
            if status == 403:
                return ProviderError(f"{where} refused access (403): {detail}", status=status)
            if status == 404:
                if model and (exc.code == "model_not_found" or "model" in detail.lower()):
                    return ProviderError(f"{where} has no model '{model}': {detail}", status=status)
                return ProviderError(f"{where}: {exc.request.url} not found (404); check base_url", status=status)
            if status == 429:
                return ProviderError(f"{where} is rate limiting requests (429): {detail}", retryable=True,
                                     status=status)
            if status >= 500:
                return ProviderError(f"{where} failed with {status}: {detail}", retryable=True, status=status)
            return ProviderError(f"{where} rejected the request ({status}): {detail}", status=status)
        if isinstance(exc, openai.APIError):
            return ProviderError(f"{where} failed mid-reply: {_first_line(exc.message)}", retryable=True)
        return ProviderError(f"{where}: {_first_line(str(exc))}")


async def _unless(awaitable: Awaitable[T], cancelled: asyncio.Future[Any]) -> T | Literal[_End.END]:
    """Await `awaitable` unless `cancelled` finishes first; then cancel it (closing its stream) and return _END."""
    if cancelled.done():
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        return _END
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait((task, cancelled), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return task.result() if not task.cancelled() else _END


def response_format(schema: dict[str, Any], mode: str) -> dict[str, Any]:
    """OpenAI's json_schema form, or the json_object+schema form llama.cpp's server accepts."""
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "reply"))[:64]
    return {"type": "json_schema", "json_schema": {"name": name, "schema": strict_schema(schema), "strict": True}}


def strict_schema(schema: Any, names: bool = False) -> Any:
    """OpenAI's strict mode wants every object closed and every property required; pydantic's schemas
    are neither (fields with defaults are optional), so tighten a copy. `names`: a mapping of
    property or definition names, whose keys are not schema keywords."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if names:
        return {key: strict_schema(value) for key, value in schema.items()}
    out = {key: strict_schema(value, names=key in ("properties", "$defs")) for key, value in schema.items() if key != "default"}
    if out.get("type") == "object" and isinstance(out.get("properties"), dict):
        out["additionalProperties"] = False
        out["required"] = list(out["properties"])
    return out


def mean_pool(vectors: list[list[float]]) -> list[float]:
    """The mean of per-token vectors (what pooling servers return)."""
    return [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]


def _rejects_json_schema(exc: openai.APIStatusError) -> bool:
    # llama.cpp's server answers type json_schema with 500 "Input should be 'text' or 'json_object'". A
    # schema OpenAI finds invalid (400 "Invalid schema for response_format") must not switch modes.
    return exc.status_code in (400, 422, 500) and "json_object" in str(exc.body).lower()


def _detail(exc: openai.APIStatusError) -> str:
    """The server's own message, one line: OpenAI's error.message, FastAPI's detail, or the body."""
    body: Any = exc.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            body = body.get("message") or body.get("detail") or body
    return _first_line(str(body if body else exc.message))


def _first_line(text: str, limit: int = 200) -> str:
    """`text` on one line, cut at `limit` characters (server errors can carry tracebacks)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _root_message(exc: BaseException) -> str:
    inner: BaseException | None = exc
    while inner is not None:
        exc, inner = inner, inner.__cause__ or inner.__context__
    return _first_line(str(exc) or type(exc).__name__)
