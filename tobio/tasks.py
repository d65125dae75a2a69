"""Task management on the kernel's loop: every long-lived coroutine is named, listed and cancellable."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from tobio.db.migrations import utcnow
from tobio.hooks import current_owner

if TYPE_CHECKING:
    from tobio.modules import Module

log = logging.getLogger(__name__)
T = TypeVar("T")
BACKGROUND_KINDS = ("job",)  # work nobody is waiting on: summaries, extraction, reflection, indexing
_background: contextvars.ContextVar[bool] = contextvars.ContextVar("tobio_background", default=False)


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`await awaitable`, raising TimeoutError after `timeout` seconds (None: no limit).

    Use this, not `asyncio.wait_for`: on Python 3.11 `wait_for` swallows a cancellation that arrives just as
    what it awaits completes, so a loop around it (a reply's updates, a kernel's heartbeat) goes on after a
    Ctrl-C or a stop. `asyncio.timeout` lets the cancellation through."""
    async with asyncio.timeout(timeout):
        return await awaitable


def in_background() -> bool:
    """Whether the running code belongs to a background job (spawned with kind "job"), however deep.

    Model calls made there queue behind a reply someone is waiting for (tobio/models/runs.py marks
    their requests), so a summary written between two turns does not delay the next turn's first token."""
    return _background.get()


@dataclass(eq=False)
class TaskInfo:
    """A kernel task: what it is, who owns it, and its asyncio task."""

    id: int
    name: str
    kind: str
    owner: str | None
    task: asyncio.Task[Any]
    module: Module | None = None  # the module that started it: unloading the module cancels it
    started_at: datetime = field(default_factory=utcnow)
    paused: bool = False

    @property
    def state(self) -> str:
        if self.task.cancelled():
            return "cancelled"
        if self.task.done():
            return "failed" if self.task.exception() else "done"
        return "paused" if self.paused else "running"


class TaskManager:
    """Spawns and tracks tasks; keeps the last finished ones for `task ls --all`."""

    def __init__(self, keep_finished: int = 100) -> None:
        self._ids = itertools.count(1)
        self.live: dict[int, TaskInfo] = {}
        self.finished: deque[TaskInfo] = deque(maxlen=keep_finished)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, kind: str = "task", owner: str | None = None,
              module: Module | None = None) -> TaskInfo:
        """Run `coro` as a kernel task (call on the kernel's loop). `module` defaults to the module whose
        init is running; a module's work started later (from an observer) names it, or uses its name as owner."""
        context = contextvars.copy_context()
        if kind in BACKGROUND_KINDS:
            context.run(_background.set, True)
        task = asyncio.get_running_loop().create_task(coro, name=name, context=context)
        info = TaskInfo(next(self._ids), name, kind, owner, task, module or current_owner())
        self.live[info.id] = info
        task.add_done_callback(lambda _t: self._finished(info))
        return info

    def _finished(self, info: TaskInfo) -> None:
        self.live.pop(info.id, None)
        self.finished.append(info)
        if not info.task.cancelled() and info.task.exception() is not None:
            log.error("task %s (%s) failed: %s", info.id, info.name, info.task.exception())

    def get(self, task_id: int) -> TaskInfo | None:
        return self.live.get(task_id) or next((t for t in self.finished if t.id == task_id), None)

    def list(self, include_finished: bool = False) -> list[TaskInfo]:
        tasks = list(self.live.values())
        if include_finished:
            tasks = list(self.finished) + tasks
        return sorted(tasks, key=lambda t: t.id)

    async def cancel(self, task_id: int) -> bool:
        """Cancel a live task and wait for it to finish; False if it was not running."""
        info = self.live.get(task_id)
        if info is None:
            return False
        info.task.cancel()
        await asyncio.gather(info.task, return_exceptions=True)
        return True

    @staticmethod
    def owned(info: TaskInfo, module: Module) -> bool:
        return info.module is module or (info.kind != "agent" and info.owner == module.name)

    async def cancel_owned(self, module: Module) -> None:
        """Cancel and wait for every live task `module` started (it is being unloaded)."""
        tasks = [info.task for info in self.live.values() if self.owned(info, module)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self) -> None:
        """Cancel everything still running and wait for it."""
        tasks = [info.task for info in self.live.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
