"""Group commit: many callers' inserts share one transaction, and each caller learns when it is durable.

While one batch is being written on the DB thread, new writes queue up; the next flush takes them
all. Under load that turns N tiny transactions into a few large ones, with no added latency when idle.

Invariant others rely on: writes commit in the order they were submitted, and the transport takes a
message's id and submits its write in one synchronous step, so a thread's messages become durable in
id order. Memory's summarizer and prompt hook cache "everything up to id N" on that basis (a path
that inserted an older message into a thread later would have to invalidate those caches).

Besides inserts, a write may *set* columns of a row by key (an agent's handling cursor, its current
state). Within a batch the last set of a row wins and every row set is one statement, so marking
10,000 messages handled in one batch costs one small UPDATE, not 10,000.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Any

from sqlalchemy.engine import Connection

from tobio.db.bulk import bulk_update, insert_columns
from tobio.db.database import Database

log = logging.getLogger(__name__)
Rows = list[Sequence[Any]]
Write = tuple[str, tuple[str, ...], Rows]
Set = tuple[str, str, tuple[str, ...], Any, tuple[Any, ...]]  # (table, key column, columns, key, values)
SetKey = tuple[str, str, tuple[str, ...]]
# (table, (key column, value column), keys, value): one row (key, value) per key, e.g. a post's pushes
Fan = tuple[str, tuple[str, str], tuple[Any, ...], Any]


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
        self._sets: dict[SetKey, dict[Any, tuple[Any, ...]]] = {}
        self._fans: dict[tuple[str, tuple[str, str]], tuple[list[tuple[Any, ...]], list[Any]]] = {}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows_written = 0

    def start(self) -> None:
        """Start the flush loop on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tobio-writer")

    def write(
        self, *writes: Write, then: Callable[[Connection], None] | None = None, sets: Sequence[Set] = (),
        fan: Fan | None = None,
    ) -> asyncio.Future[None]:
        """Queue rows for several tables; the future resolves once all of them are committed.

        `fan` adds one row per key (a post's pushes, kept as columns until the flush); `sets` update
        rows by key after the inserts; `then(conn)` runs last, in the same transaction (e.g. an UPDATE
        that must commit together with them).
        """
        if fan is not None:
            keys, values = self._fans.get(fan[:2]) or self._fans.setdefault(fan[:2], ([], []))
            keys.append(fan[2])
            values.append(fan[3])
            self._pending_count += len(fan[2])
        self.queue(*writes, then=then, sets=sets)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def queue(self, *writes: Write, then: Callable[[Connection], None] | None = None, sets: Sequence[Set] = ()) -> None:
        """`write` without a future, for records nobody waits on (a failed batch is logged).

        Same order and atomicity as `write`: a crash loses a queued record whole, never half of it.
        """
        if self._task is None or self._task.done():
            raise RuntimeError("writer is not running")
        for table, columns, rows in writes:
            if rows:
                self._pending.setdefault((table, columns), []).extend(rows)
                self._pending_count += len(rows)
        for table, key_column, columns, key, values in sets:
            self._sets.setdefault((table, key_column, columns), {})[key] = values
        if then is not None:
            self._statements.append(then)
        assert self._wake is not None
        self._wake.set()

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
            batch, waiters, statements, sets, fans = self._pending, self._waiters, self._statements, self._sets, self._fans
            self._pending, self._waiters, self._statements, self._sets, self._fans = {}, [], [], {}, {}
            self._pending_count = 0
            try:
                await self.db.call(self._flush, batch, fans, sets, statements)
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
        self, conn: Connection, batch: dict[tuple[str, tuple[str, ...]], Rows],
        fans: dict[tuple[str, tuple[str, str]], tuple[list[tuple[Any, ...]], list[Any]]],
        sets: dict[SetKey, dict[Any, tuple[Any, ...]]], statements: list[Callable[[Connection], None]],
    ) -> None:
        for (table, columns), rows in batch.items():
            self.db.bulk_insert(conn, table, columns, rows)
            self.rows_written += len(rows)
        for (table, columns), (keys, values) in fans.items():
            # Columns straight from the queued tuples, in C: no tuple per row, no transpose.
            key_column = list(chain.from_iterable(keys))
            value_column = list(chain.from_iterable(map(repeat, values, map(len, keys))))
            insert_columns(self.db, conn, table, columns, [key_column, value_column])
            self.rows_written += len(key_column)
        for (table, key_column, columns), by_key in sets.items():
            bulk_update(self.db, conn, table, key_column, columns, by_key)
        for statement in statements:
            statement(conn)
