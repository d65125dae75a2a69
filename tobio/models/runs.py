"""Runs: one recorded model call on a thread, producing steps (the retired Assistants shape, kept as
Tobio's own record). Status goes queued → in_progress → completed | failed | cancelled | expired.

Every run is a row in `runs` (model, parameters, tokens, time to first token, latency, error) and its
steps are rows in `steps`, linked to the message the run produced, so `sql` can answer what each model
cost each agent. Retries with backoff happen here, before the first token, for every provider alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.db.literals import const
from tobio.db.migrations import utcnow
from tobio.db.tables import RunRow, StepRow
from tobio.providers.base import ChatRequest, Chunk, ProviderError
from tobio.secrets import redact, redact_text
from tobio.tasks import in_background

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.models.bundle import Model

# Runs no one has completed yet. Through lower(), a computed value compared row by row: DuckDB 1.5.6
# answered `status IN (...)` wrongly after a kill -9 through a secondary index on `status` (duckdb#23788).
# Tobio no longer creates secondary indexes on DuckDB (migration m005), so this only guards files that an
# older version or another tool indexed; a missed leftover would stay `in_progress` for ever.
_UNFINISHED = sa.func.lower(RunRow.c.status).in_([const("queued"), const("in_progress")])

log = logging.getLogger(__name__)
FINAL = ("completed", "failed", "cancelled", "expired")
STEP_COLUMNS = ("id", "run_id", "message_id", "agent_id", "kind", "name", "params", "result", "created_at")
SECRET_PARAMS = ("api_key", "authorization")


@dataclass
class Run:
    """A live run; iterate it for text deltas, or `await run.wait()` for the whole reply."""

    id: int
    model: Model
    request: ChatRequest
    thread_id: int | None
    agent_id: int | None
    manager: RunManager
    purpose: str = "chat"  # what it was for, as recorded (the bundle's purpose, "prefill", "reflect", …)
    status: str = "queued"
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    ttft_ms: float | None = None
    latency_ms: float | None = None
    model_ms: float = 0.0  # time spent inside the provider's stream alone (benchmarks compare it)
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _started: bool = False

    def cancel(self) -> None:
        """Ask the provider to stop; the run ends as `cancelled`."""
        self.cancel_event.set()

    async def deltas(self) -> AsyncIterator[str]:
        """Run the model, yielding text as it streams. Raises ProviderError when the run fails."""
        if self._started:
            raise RuntimeError(f"run {self.id} was already started")
        self._started = True
        try:
            async for chunk in self.manager._execute(self):
                if chunk.text:
                    yield chunk.text
        finally:
            self._done.set()

    async def wait(self) -> Run:
        """Run to the end without streaming (or wait for whoever is streaming it)."""
        if not self._started:
            async for _ in self.deltas():
                pass
        else:
            await self._done.wait()
        if self.status == "failed":
            raise ProviderError(self.error or "run failed")
        return self


class RunManager:
    """Creates, executes, records and cancels runs."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.live: dict[int, Run] = {}

    def create(
        self,
        model: Model,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any] | None = None,
        thread_id: int | None = None,
        agent_id: int | None = None,
        json_schema: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        prefill: bool = False,
        purpose: str | None = None,
        history_moved: bool = False,
    ) -> Run:
        """A queued run (recorded when it starts, so a run never started costs nothing). `purpose` is what
        `run ls` shows it was for: the bundle's purpose unless the caller says (a reflection on the chat model)."""
        merged = {**model.spec.params, **(params or {})}
        request = ChatRequest(model.provider_model, messages, merged, json_schema, tools, background=in_background(),
                              prefill=prefill, history_moved=history_moved)
        run = Run(self.kernel.db.next_ids("runs"), model, request, thread_id, agent_id, self,
                  purpose=purpose or ("prefill" if prefill else model.spec.purpose))
        self.live[run.id] = run
        return run

    # -- execution ---------------------------------------------------------------------------------
    async def _execute(self, run: Run) -> AsyncIterator[Chunk]:
        provider = run.model.provider
        retries = 0 if provider.retries_itself else provider.config.max_retries
        began = time.perf_counter()
        run.status = "in_progress"
        self._record_start(run)
        attempt = 0
        try:
            while True:
                got_text = False
                model_began = time.perf_counter()
                stream = provider.stream_chat(run.request, run.cancel_event)
                try:
                    async for chunk in stream:
                        if run.cancel_event.is_set():
                            break
                        if chunk.text:
                            if run.ttft_ms is None:
                                run.ttft_ms = (time.perf_counter() - began) * 1000
                            got_text = True
                            run.text += chunk.text
                        if chunk.tool_call:
                            run.tool_calls.append(chunk.tool_call)
                        if chunk.prompt_tokens is not None:
                            run.prompt_tokens = chunk.prompt_tokens
                        if chunk.completion_tokens is not None:
                            run.completion_tokens = chunk.completion_tokens
                        if chunk.cached_tokens is not None:
                            run.cached_tokens = chunk.cached_tokens
                        if chunk.finish_reason:
                            run.finish_reason = chunk.finish_reason
                        yield chunk
                    break
                except ProviderError as exc:
                    await _close(stream)
                    # Retry only what has not streamed yet: a half reply cannot be taken back.
                    if exc.retryable and not got_text and attempt < retries and not run.cancel_event.is_set():
                        attempt += 1
                        delay = min(8.0, 0.5 * 2 ** (attempt - 1))
                        log.warning("run %d on %s: %s; retry %d/%d in %.1fs", run.id, provider.name, exc, attempt, retries, delay)
                        await asyncio.sleep(delay)
                        continue
                    raise
                finally:
                    await _close(stream)  # stops the provider's stream for real on cancel or break
                    run.model_ms += (time.perf_counter() - model_began) * 1000
            run.status = "cancelled" if run.cancel_event.is_set() else "completed"
        except asyncio.CancelledError:
            run.status, run.error = "cancelled", "cancelled by the kernel"
            raise
        except ProviderError as exc:
            run.status, run.error = "failed", str(exc)
            log.error("run %d on %s failed: %s", run.id, provider.name, exc)
            raise
        except Exception as exc:  # recorded, then re-raised as a provider error
            run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("run %d on %s failed", run.id, provider.name)
            raise ProviderError(run.error) from exc
        finally:
            run.latency_ms = (time.perf_counter() - began) * 1000
            self.live.pop(run.id, None)
            self._record_end(run)

    # -- records -----------------------------------------------------------------------------------
    def _params(self, run: Run) -> dict[str, Any]:
        params: dict[str, Any] = redact({k: v for k, v in run.request.params.items() if k.lower() not in SECRET_PARAMS})
        if run.request.json_schema is not None:
            params["json_schema"] = run.request.json_schema
        if run.request.tools:
            params["tools"] = [t.get("function", {}).get("name", "?") for t in run.request.tools]
        return params

    def _background(self, future: asyncio.Future[None], what: str) -> None:
        """Run records need not hold up the turn: the writer keeps them in order and commits them
        with the next batch; a failure is logged rather than lost."""

        def check(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("could not record %s: %s", what, f.exception())

        future.add_done_callback(check)

    def _record_start(self, run: Run) -> None:
        row = dict(
            id=run.id, thread_id=run.thread_id, agent_id=run.agent_id, model=run.model.name,
            provider=run.model.provider.name, provider_model=run.request.model,
            purpose=run.purpose,
            params=self._params(run), status="in_progress", created_at=run.created_at, started_at=utcnow(),
        )
        self._background(self.kernel.writer.write(("runs", tuple(row), [tuple(row.values())])), f"start of run {run.id}")

    def _record_end(self, run: Run) -> None:
        now = utcnow()
        steps: list[tuple[Any, ...]] = [(self.kernel.db.next_ids("steps"), run.id, None, run.agent_id, "message_creation", run.model.name,
                  None, {"text": run.text, "finish_reason": run.finish_reason}, now)]
        for call in run.tool_calls:
            steps.append((self.kernel.db.next_ids("steps"), run.id, None, run.agent_id, "tool_call",
                          str(call.get("name")), {"arguments": call.get("arguments")}, None, now))
        values = dict(
            status=run.status, completed_at=now, ttft_ms=run.ttft_ms, latency_ms=run.latency_ms,
            prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens, cached_tokens=run.cached_tokens,
            error=redact_text(run.error) if run.error else run.error,
        )

        def update(conn: Connection) -> None:
            conn.execute(sa.update(RunRow).where(RunRow.c.id == run.id).values(**values))

        self._background(self.kernel.writer.write(("steps", STEP_COLUMNS, steps), then=update), f"end of run {run.id}")

    async def link(self, run: Run, message_id: int) -> None:
        """Record that `run` produced message `message_id` (the run and its steps point at it)."""

        def update(conn: Connection) -> None:
            conn.execute(sa.update(RunRow).where(RunRow.c.id == run.id).values(message_id=message_id))
            conn.execute(sa.update(StepRow).where(StepRow.c.run_id == run.id).values(message_id=message_id))

        self._background(self.kernel.writer.write(then=update), f"message of run {run.id}")

    async def record_step(self, run_id: int | None, agent_id: int | None, kind: str, name: str,
                          params: dict[str, Any] | None, result: dict[str, Any] | None, message_id: int | None = None) -> int:
        """Record an action (e.g. a command an agent ran) as a step of a run or message."""
        step_id = self.kernel.db.next_ids("steps")
        await self.kernel.writer.write(
            ("steps", STEP_COLUMNS, [(step_id, run_id, message_id, agent_id, kind, name, params, result, utcnow())])
        )
        return step_id

    # -- control -----------------------------------------------------------------------------------
    async def cancel(self, run_id: int) -> bool:
        run = self.live.get(run_id)
        if run is None:
            return False
        run.cancel()
        return True

    async def expire_leftovers(self) -> list[int]:
        """At start-up: runs recorded as queued/in progress belong to a process that is gone; mark them expired."""

        def sweep(conn: Connection) -> list[int]:
            ids = list(conn.execute(sa.select(RunRow.c.id).where(_UNFINISHED)).scalars())
            if ids:
                conn.execute(sa.update(RunRow).where(RunRow.c.id.in_(ids)).values(
                    status="expired", error="the process running it stopped", completed_at=utcnow()))
            return ids

        ids = await self.kernel.db.call(sweep)
        if ids:
            log.warning("marked %d run(s) left by a previous process as expired: %s", len(ids), ids)
        return ids

    async def cancel_dangling(self) -> list[int]:
        """Mark runs recorded as queued/in progress that nothing is executing (left by a crash) cancelled."""
        live = set(self.live)
        await self.kernel.flush()

        def sweep(conn: Connection) -> list[int]:
            ids = [i for i in conn.execute(sa.select(RunRow.c.id).where(_UNFINISHED)).scalars() if i not in live]
            if ids:
                conn.execute(
                    sa.update(RunRow).where(RunRow.c.id.in_(ids)).values(status="cancelled", error="dangling: cancelled", completed_at=utcnow())
                )
            return ids

        return await self.kernel.db.call(sweep)


async def _close(stream: AsyncIterator[Chunk]) -> None:
    """Stop a provider's stream for real (an async generator's `aclose`; a plain iterator has none)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
