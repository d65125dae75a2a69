"""Group commit: many callers' inserts share one transaction, and each caller learns when it is durable.

While one batch is being written on the DB thread, new writes queue up; the next flush takes them
all. Under load that turns N tiny transactions into a few large ones, with no added latency when idle.

Invariant others rely on: writes commit in the order they were submitted, and the transport takes a
message's id and submits its write in one synchronous step, so a thread's messages become durable in
id order. Memory's summarizer and prompt hook cache "everything up to id N" on that basis (a path
that inserted an older message into a thread later would have to invalidate those caches).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from tobio.db.database import Database

log = logging.getLogger(__name__)
Rows = list[Sequence[Any]]
Write = tuple[str, tuple[str, ...], Rows]


class GroupCommitWriter:
    """Buffers inserts from the kernel's loop and flushes them in batches on the DB thread."""

    def __init__(self, db: Database, max_delay_s: float = 0.0, max_rows: int = 200_000) -> None:
        self.db = db
        self.max_delay_s = max_delay_s
        self.max_rows = max_rows
        self._pending: dict[tuple[str, tuple[str, ...]], Rows] = {}
        self._pending_count = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._statements: list[Callable[[Connection], None]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows_written = 0

    def start(self) -> None:
        """Start the flush loop on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tobio-writer")

    def write(self, *writes: Write, then: Callable[[Connection], None] | None = None) -> asyncio.Future[None]:
        """Queue rows for several tables; the future resolves once all of them are committed.

        `then(conn)` runs in the same transaction after the inserts (e.g. an UPDATE that must
        commit together with them).
        """
        if self._task is None or self._task.done():
            raise RuntimeError("writer is not running")
        for table, columns, rows in writes:
            if rows:
                self._pending.setdefault((table, columns), []).extend(rows)
                self._pending_count += len(rows)
        if then is not None:
            self._statements.append(then)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        assert self._wake is not None
        self._wake.set()
        return future

    async def flush(self) -> None:
        """Wait until everything written so far is durable."""
        if self._task is not None and not self._task.done():
            await self.write()

    async def close(self) -> None:
        """Flush what is pending, then stop."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            if self.max_delay_s and self._pending_count < self.max_rows:
                await asyncio.sleep(self.max_delay_s)
            self._wake.clear()
            batch, waiters, statements = self._pending, self._waiters, self._statements
            self._pending, self._waiters, self._statements, self._pending_count = {}, [], [], 0
            try:
                await self.db.call(self._flush, batch, statements)
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                log.error("group commit of %d rows failed: %s", sum(map(len, batch.values())), exc)
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            self.batches += 1
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _flush(
        self, conn: Connection, batch: dict[tuple[str, tuple[str, ...]], Rows], statements: list[Callable[[Connection], None]]
    ) -> None:
        for (table, columns), rows in batch.items():
            self.db.bulk_insert(conn, table, columns, rows)
            self.rows_written += len(rows)
        for statement in statements:
            statement(conn)
