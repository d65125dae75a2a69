"""An agent's inbox: one consumer, many producers on the same loop.

asyncio.Queue does bookkeeping (task_done counters, maxsize checks, getter lists) that the
transport's hot path pays for on every push; a deque plus one waiter future is several times cheaper.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """FIFO with `put_nowait` (never blocks) and `await get()` for a single consumer."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def put_many(self, items: list[T]) -> None:
        """`put_nowait` for each of `items`, in order, waking the consumer once."""
        self._items.extend(items)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def put_front(self, items: Iterable[T], key: Callable[[T], Hashable]) -> None:
        """Put `items` ahead of what is queued, in their order, skipping any whose key is already queued
        (a backlog read from the database while live deliveries kept arriving)."""
        queued = {key(item) for item in self._items}
        fresh = [item for item in items if key(item) not in queued]
        if not fresh:
            return
        self._items.extendleft(reversed(fresh))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> T:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items
