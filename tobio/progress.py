"""Progress for slow one-off jobs (loading weights): a spinner on a terminal, log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("tobio.progress")


@contextmanager
def loading(label: str) -> Iterator[None]:
    """Show `label` with a spinner and elapsed time while the block runs; log how long it took."""
    began = time.perf_counter()
    log.info("%s ...", label)
    status = None
    if sys.stderr.isatty():
        from rich.console import Console

        status = Console(stderr=True).status(f"{label} ...", spinner="dots")
        status.start()
    try:
        yield
    finally:
        if status is not None:
            status.stop()
        log.info("%s: done in %.2f s", label, time.perf_counter() - began)
