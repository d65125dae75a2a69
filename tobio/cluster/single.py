"""One kernel per DuckDB or SQLite file: a second one says so in one line and writes nothing.

DuckDB already refuses a second writer process (database.py turns its error into one line). SQLite
would let a second process in and interleave two kernels' ids, so the kernel holds an exclusive lock on
a file beside the database (`tobio.sqlite.lock`) for as long as it has it open; the OS drops the lock when
the process dies, kill -9 included, so a crash never leaves the file locked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from tobio.errors import DatabaseLockedError


class FileLock:
    """An exclusive, non-blocking lock on `path`, held until `release` (or the process's end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, url: str) -> None:
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            _lock(handle)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DatabaseLockedError(
                f"database {url} is open in {holder}; SQLite stays one kernel per file (several kernels share "
                "PostgreSQL). Close that process, or give this one another file with --database."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None


def _lock(handle: IO[str]) -> None:
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
