"""Kernel logging into the `logs` table, through the group-commit writer."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from tobio.db.database import SMALL_BATCH
from tobio.secrets import redact_text

if TYPE_CHECKING:
    from tobio.kernel import Kernel

LOG_COLUMNS = ("id", "level", "logger", "created_at", "content")


Row = tuple[str, str, datetime, str]  # level, logger, created_at, content


class DatabaseLogHandler(logging.Handler):
    """Queues each record as a row; never blocks the caller, from any thread.

    While the kernel boots, rows are held and then written in one batch (`flush_held`): written as they came,
    each "loaded module" line was a commit of its own between the boot's reads, 8 commits a start."""

    def __init__(self, kernel: Kernel, level: int = logging.INFO, *, hold: bool = False) -> None:
        super().__init__(level)
        self.kernel = kernel
        self._held: list[Row] | None = [] if hold else None

    def emit(self, record: logging.LogRecord) -> None:
        loop = self.kernel.loop
        if loop is None or loop.is_closed() or not self.kernel.is_running:
            return
        created = datetime.fromtimestamp(record.created, timezone.utc).replace(tzinfo=None)
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f"\n{record.exc_info[0].__name__ if record.exc_info[0] else 'Error'}: {record.exc_info[1]}"
        text = redact_text(text)  # a key in a URL or header must not reach the logs table
        row = (record.levelname, record.name, created, text)
        rows = [row]
        if self._held is not None:  # under Handler's lock: `flush_held` cannot swap the list meanwhile
            self._held.append(row)
            if len(self._held) < SMALL_BATCH:
                return
            rows, self._held = self._held, []  # a larger batch would go to DuckDB as a DataFrame (pandas)
        try:
            loop.call_soon_threadsafe(self._write, rows)
        except RuntimeError:  # loop closed while shutting down
            pass

    def flush_held(self) -> None:
        """Write the rows held so far in one batch, and each later one as it comes (on the kernel's loop)."""
        self.acquire()  # Handler's lock, held around each emit
        try:
            held, self._held = self._held, None
        finally:
            self.release()
        if held:
            self._write(held)

    def _write(self, rows: list[Row]) -> None:
        first = self.kernel.db.next_ids("logs", len(rows))
        future = self.kernel.writer.write(("logs", LOG_COLUMNS, [(first + i, *row) for i, row in enumerate(rows)]))
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)


def install(kernel: Kernel, level: str, *, hold: bool = False) -> DatabaseLogHandler:
    """Log `tobio.*` records at `level` and above into the logs table (held until `flush_held` with `hold`)."""
    handler = DatabaseLogHandler(kernel, getattr(logging, level), hold=hold)
    root = logging.getLogger("tobio")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > handler.level:
        root.setLevel(handler.level)
    return handler


def uninstall(handler: DatabaseLogHandler) -> None:
    logging.getLogger("tobio").removeHandler(handler)


__all__ = ["DatabaseLogHandler", "install", "uninstall", "asyncio"]
