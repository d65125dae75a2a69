"""Loading third-party models without losing anyone else's output.

llama-cpp-python's own quiet mode (`verbose=False`) points file descriptors 1 and 2 at /dev/null for
the whole process while a model loads, so whatever another thread printed meanwhile (a script's
results, the shell's tables) vanished. Instead we load in verbose mode, route llama.cpp's C-level log
to Python logging (llama_adapter.py), and swallow Python-level chatter only for the loading thread itself.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

log = logging.getLogger("tobio.llama")


class _ThreadFilter(io.TextIOBase):
    """A stand-in for sys.stdout/stderr that drops writes from one thread and passes the rest on."""

    def __init__(self, real: TextIO, quiet_thread: int) -> None:
        self._real = real
        self._quiet = quiet_thread

    def write(self, text: str) -> int:
        if threading.get_ident() == self._quiet:
            log.debug("%s", text.rstrip())
            return len(text)
        return self._real.write(text)

    def flush(self) -> None:
        self._real.flush()

    def isatty(self) -> bool:
        return self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def quiet_this_thread() -> Iterator[None]:
    """Silence Python-level prints of the current thread only; other threads' output goes through."""
    me = threading.get_ident()
    real_out, real_err = sys.stdout, sys.stderr
    out, err = _ThreadFilter(real_out, me), _ThreadFilter(real_err, me)
    sys.stdout, sys.stderr = out, err  # a TextIO in all but name
    try:
        yield
    finally:
        # Restore only what is still ours: someone (prompt_toolkit's patch_stdout) may have swapped since.
        if sys.stdout is out:
            sys.stdout = real_out
        if sys.stderr is err:
            sys.stderr = real_err
