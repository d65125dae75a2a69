"""Kernel logging into the `logs` table, through the group-commit writer."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from tobio.secrets import redact_text

if TYPE_CHECKING:
    from tobio.kernel import Kernel

LOG_COLUMNS = ("id", "level", "logger", "created_at", "content")


class DatabaseLogHandler(logging.Handler):
    """Queues each record as a row; never blocks the caller, from any thread."""

    def __init__(self, kernel: Kernel, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.kernel = kernel

    def emit(self, record: logging.LogRecord) -> None:
        loop = self.kernel.loop
        if loop is None or loop.is_closed() or not self.kernel.is_running:
            return
        created = datetime.fromtimestamp(record.created, timezone.utc).replace(tzinfo=None)
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f"\n{record.exc_info[0].__name__ if record.exc_info[0] else 'Error'}: {record.exc_info[1]}"
        text = redact_text(text)  # a key in a URL or header must not reach the logs table
        try:
            loop.call_soon_threadsafe(self._write, record.levelname, record.name, created, text)
        except RuntimeError:  # loop closed while shutting down
            pass

    def _write(self, level: str, logger: str, created: datetime, text: str) -> None:
        writer = self.kernel.writer
        log_id = self.kernel.db.next_ids("logs")
        future = writer.write(("logs", LOG_COLUMNS, [(log_id, level, logger, created, text)]))
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)


def install(kernel: Kernel, level: str) -> DatabaseLogHandler:
    handler = DatabaseLogHandler(kernel, getattr(logging, level))
    root = logging.getLogger("tobio")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > handler.level:
        root.setLevel(handler.level)
    return handler


def uninstall(handler: DatabaseLogHandler) -> None:
    logging.getLogger("tobio").removeHandler(handler)


__all__ = ["DatabaseLogHandler", "install", "uninstall", "asyncio"]
