"""Reading a file with a size cap: never a FIFO, device or a file that grows without end."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tobio.errors import ConfigError


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit} bytes"


def read_bytes(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; otherwise one ConfigError naming it."""
    file = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{file}: not a regular file")
            blob = handle.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except ValueError:  # an embedded NUL byte in the name
        raise ConfigError(f"{file!r}: not a valid file name") from None
    if len(blob) > limit:
        raise ConfigError(f"{file}: too large (more than {_size(limit)})")
    return blob


def read_text(path: str | os.PathLike[str], limit: int) -> str:
    """A UTF-8 text file of at most `limit` bytes; bad encoding is one line naming the file."""
    blob = read_bytes(path, limit)
    try:
        return blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
