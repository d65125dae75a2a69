"""Group commit: many callers' inserts share one transaction, and each caller learns when it is durable.

While one batch is being written on the DB thread, new writes queue up; the next flush takes them
all. Under load that turns N tiny transactions into a few large ones, with no added latency when idle.

The DB thread takes the next batch itself as soon as it has committed one, instead of waiting for
the kernel's loop to hand it over. A loop that wakes 1,000 posters at once runs all of them before
anything else, so a hand-over from the loop would come only after that burst, and the loop and the
database would take turns instead of working at the same time. Likewise a burst that has queued
`eager_rows` rows starts a flush right away rather than at its end.

Invariant others rely on: writes commit in the order they were submitted, and the transport takes a
message's id and submits its write in one synchronous step, so a thread's messages become durable in
id order. Memory's summarizer and prompt hook cache "everything up to id N" on that basis (a path
that inserted an older message into a thread later would have to invalidate those caches).

Besides inserts, a write may *set* columns of a row by key (an agent's handling cursor, its current
state). Within a batch the last set of a row wins and every row set is one statement, so marking
10,000 messages handled in one batch costs one small UPDATE, not 10,000.

A write may also bring an `after` callback and an item: once its batch is durable, each callback is
called once with the items of the batch in submission order, after the waiters are resolved (so what
they wake up to runs first). The transport delivers a whole batch of posts to the inboxes that way,
one call per receiver instead of one per post and receiver.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from tobio.db.bulk import bulk_update, insert_fans
from tobio.db.database import Database
from tobio.db.tables import metadata

log = logging.getLogger(__name__)
Rows = list[Sequence[Any]]
Write = tuple[str, tuple[str, ...], Sequence[Sequence[Any]]]  # (table, columns, rows)
Set = tuple[str, str, tuple[str, ...], Any, tuple[Any, ...]]  # (table, key column, columns, key, values)
SetKey = tuple[str, str, tuple[str, ...]]
# (table, (key column, value column), keys, value): one row (key, value) per key, e.g. a post's pushes
Fan = tuple[str, tuple[str, str], tuple[Any, ...], Any]
# Fans of a batch by table: (keys, values) per run of fans with the very same keys tuple (one channel's
# thread ids), so 500 posts to one channel are one pair of lists and not 5,000 rows.
FanGroups = list[tuple[tuple[Any, ...], list[Any]]]
After = tuple[Callable[[list[Any]], None], Any]  # (callback, item): see the module docstring


@dataclass(slots=True)
class _Batch:
    """Everything queued since the last flush: it commits as one transaction."""

    rows: dict[tuple[str, tuple[str, ...]], Rows] = field(default_factory=dict)
    fans: dict[tuple[str, tuple[str, str]], FanGroups] = field(default_factory=dict)
    sets: dict[SetKey, dict[Any, tuple[Any, ...]]] = field(default_factory=dict)
    statements: list[Callable[[Connection], None]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    after: dict[Callable[[list[Any]], None], list[Any]] = field(default_factory=dict)
    posts: list[Any] = field(default_factory=list)  # clustered: (message, reply_to), written at commit
    count: int = 0  # rows queued, to decide when to start flushing

    def empty(self) -> bool:
        return not (self.rows or self.fans or self.sets or self.statements or self.waiters or self.posts)


class GroupCommitWriter:
    """Buffers writes from the kernel's loop; the DB thread commits them in batches, back to back."""

    def __init__(self, db: Database, max_delay_s: float = 0.0, eager_rows: int = 2048) -> None:
        self.db = db
        self.max_delay_s = max_delay_s
        self.eager_rows = eager_rows
        self._batch = _Batch()
        self._lock = threading.Lock()  # the loop adds to the batch while the DB thread may take it
        self._flushing = False  # a flush is queued or running on the DB thread
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self._checked: set[tuple[str, tuple[str, ...]]] = set()  # (table, columns) known to be in the schema
        self.rows_written = 0
        self.cluster: Any = None  # tobio.cluster.node.Cluster when several kernels share the database

    def start(self) -> None:
        """Accept writes from the running event loop."""
        self._loop = asyncio.get_running_loop()

    def write(
        self, *writes: Write, then: Callable[[Connection], None] | None = None, sets: Sequence[Set] = (),
        fan: Fan | None = None, after: After | None = None, post: Any = None,
    ) -> asyncio.Future[None]:
        """Queue rows for several tables; the future resolves once all of them are committed.

        `post` (clustered kernels only) is a (message, reply_to) whose id, row and pushes are made as it
        commits (tobio/cluster/node.py). `fan` adds one row per key (a post's pushes, kept as lists until the flush); `sets` update
        rows by key after the inserts; `then(conn)` runs last, in the same transaction (e.g. an UPDATE
        that must commit together with them); `after` is called back once they are durable.
        """
        loop = self._running()
        future: asyncio.Future[None] = loop.create_future()
        self._add(writes, then, sets, fan, future, after, post)
        return future

    def queue(self, *writes: Write, then: Callable[[Connection], None] | None = None, sets: Sequence[Set] = ()) -> None:
        """`write` without a future, for records nobody waits on (a failed batch is logged).

        Same order and atomicity as `write`: a crash loses a queued record whole, never half of it.
        """
        self._running()
        self._add(writes, then, sets, None, None, None)

    async def flush(self) -> None:
        """Wait until everything written so far is durable."""
        if self._loop is not None:
            await self.write()

    async def close(self) -> None:
        """Flush what is pending, then refuse further writes."""
        await self.flush()
        if self._timer is not None:
            self._timer.cancel()
        self._loop = None

    # -- the loop's side --------------------------------------------------------------------------
    def _running(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("writer is not running")
        return self._loop

    def _check(self, table: str, columns: tuple[str, ...]) -> None:
        """Refuse rows for a table or column the schema does not have, here, where the caller hears of it:
        at flush time the bad rows would fail the whole batch, other people's posts with it."""
        if (table, columns) in self._checked:
            return
        known = metadata.tables.get(table)
        if known is None:
            raise ValueError(f"no table {table!r} in the schema (a module's table belongs on tobio.db.tables.metadata)")
        missing = [c for c in columns if c not in known.c]
        if missing:
            raise ValueError(f"table {table!r} has no column {', '.join(map(repr, missing))}")
        self._checked.add((table, columns))

    def _add(self, writes: Sequence[Write], then: Callable[[Connection], None] | None, sets: Sequence[Set],
             fan: Fan | None, future: asyncio.Future[None] | None, after: After | None, post: Any = None) -> None:
        for table, columns, _rows in writes:
            self._check(table, tuple(columns))
        for table, key_column, columns, _key, _values in sets:
            self._check(table, (key_column, *columns))
        if fan is not None:
            self._check(fan[0], tuple(fan[1]))
        with self._lock:
            batch = self._batch
            for table, columns, rows in writes:
                if rows:
                    batch.rows.setdefault((table, columns), []).extend(rows)
                    batch.count += len(rows)
            if fan is not None:
                table, columns, keys, value = fan
                groups = batch.fans.get((table, columns))
                if groups is None:
                    groups = batch.fans[(table, columns)] = []
                if groups and groups[-1][0] is keys:
                    groups[-1][1].append(value)
                else:
                    groups.append((keys, [value]))
                batch.count += len(keys)
            for table, key_column, columns, key, values_ in sets:
                batch.sets.setdefault((table, key_column, columns), {})[key] = values_
            if post is not None:
                batch.posts.append(post)
                batch.count += 1
            if then is not None:
                batch.statements.append(then)
            if future is not None:
                batch.waiters.append(future)
            if after is not None:
                items = batch.after.get(after[0])
                if items is None:
                    items = batch.after[after[0]] = []
                items.append(after[1])
            if self._flushing:
                return  # the DB thread takes this batch when it is done with the current one
            if batch.count >= self.eager_rows or not self.max_delay_s:
                self._start_flush()
                return
        if self._timer is None:
            self._timer = self._running().call_later(self.max_delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        with self._lock:
            if not self._flushing and not self._batch.empty():
                self._start_flush()

    def _start_flush(self) -> None:
        """Hand the DB thread a flush (called with the lock held)."""
        self._flushing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.db._executor.submit(self._flush_next)  # the DB thread, directly: see the module docstring

    def _settle(self, batch: _Batch, error: BaseException | None) -> None:
        if error is None:
            self.batches += 1
        for waiter in batch.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
        if error is None and batch.posts:
            try:
                self.cluster.committed(batch.posts)
            except Exception:  # the batch is durable all the same
                log.exception("cluster: committed posts callback failed")
        if error is None:
            for callback, items in batch.after.items():
                try:
                    callback(items)
                except Exception:  # the rest of the batch is durable all the same
                    log.exception("after-commit callback %r failed", callback)

    # -- the DB thread's side ----------------------------------------------------------------------
    def _flush_next(self) -> None:
        """Commit the queued batch; if more was queued meanwhile, queue another flush behind whatever
        else waits for the DB thread (reads are not starved by a steady stream of writes)."""
        with self._lock:
            batch, self._batch = self._batch, _Batch()
        loop = self._loop
        error: BaseException | None = None
        if not batch.empty():
            try:
                self.db._run(self._flush, batch)
            except Exception as exc:  # every waiter must hear about it
                log.error("group commit of %d rows failed: %s", batch.count, exc)
                error = exc
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(self._settle, batch, error)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass
        with self._lock:
            if self._batch.empty():
                self._flushing = False
                return
        try:
            self.db._executor.submit(self._flush_next)
        except RuntimeError:  # the database is closing
            with self._lock:
                self._flushing = False

    def _flush(self, conn: Connection, batch: _Batch) -> None:
        if self.cluster is not None:
            self.cluster.fence(conn, batch)  # refuses the batch if it writes for an agent run elsewhere now
        for (table, columns), rows in batch.rows.items():
            self.db.bulk_insert(conn, table, columns, rows)
            self.rows_written += len(rows)
        if batch.posts:  # after the rows: a thread opened in this batch receives this batch's posts
            self.cluster.commit_posts(conn, batch.posts)
            self.rows_written += len(batch.posts)
        for (table, columns), groups in batch.fans.items():
            self.rows_written += insert_fans(self.db, conn, table, columns, groups)
        for (table, key_name, columns), by_key in batch.sets.items():
            bulk_update(self.db, conn, table, key_name, columns, by_key)
        for statement in batch.statements:
            statement(conn)
