"""Progress for slow one-off jobs (loading weights): a spinner on a terminal, log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("tobio.progress")

_active = 0  # loads in progress in this process: `wait` counts them as busy
_active_lock = threading.Lock()


def loads_in_progress() -> int:
    """How many `loading()` blocks are running now (model weights being read, for instance)."""
    return _active


@contextmanager
def loading(label: str) -> Iterator[None]:
    """Show `label` with a spinner and elapsed time while the block runs; log how long it took."""
    global _active
    began = time.perf_counter()
    with _active_lock:
        _active += 1
    log.info("%s ...", label)
    status = None
    if sys.stderr.isatty():
        from rich.console import Console

        status = Console(stderr=True).status(f"{label} ...", spinner="dots")
        status.start()
    try:
        yield
    finally:
        with _active_lock:
            _active -= 1
        if status is not None:
            status.stop()
        log.info("%s: done in %.2f s", label, time.perf_counter() - began)
