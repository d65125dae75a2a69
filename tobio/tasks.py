"""Task management on the kernel's loop: every long-lived coroutine is named, listed and cancellable."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tobio.db.migrations import utcnow
from tobio.hooks import current_owner

if TYPE_CHECKING:
    from tobio.modules import Module

log = logging.getLogger(__name__)


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
        task = asyncio.get_running_loop().create_task(coro, name=name)
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
