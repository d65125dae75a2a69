"""One Tobio kernel per Python process, shared by the magic and any chat view in the notebook.

Jupyter already runs an asyncio loop in the main thread; the Tobio kernel runs its own loop in its own
thread, so cells call it synchronously (`kernel.run`) without touching Jupyter's loop.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from tobio.errors import TobioError
from tobio.kernel import Kernel

_lock = threading.Lock()
_kernel: Kernel | None = None
_settings: dict[str, str | None] = {"config": None, "database": None}


def configure(config: str | Path | None = None, database: str | None = None) -> None:
    """Choose the kernel config (and database) before first use; restarts the kernel if it was running."""
    global _kernel
    with _lock:
        _settings["config"] = str(config) if config else None
        _settings["database"] = database
        if _kernel is not None:
            _kernel.close()
            _kernel = None


def get_kernel() -> Kernel:
    """The process's kernel, started on first use (config: `configure()`, TOBIO_CONFIG, ./configs)."""
    global _kernel
    with _lock:
        if _kernel is None or not _kernel.is_running:
            _kernel = Kernel(_settings["config"], database=_settings["database"]).start()
        return _kernel


def close_kernel() -> None:
    """Stop the shared kernel (flushes everything)."""
    global _kernel
    with _lock:
        if _kernel is not None:
            try:
                _kernel.close()
            except TobioError:
                pass
            _kernel = None


def _register_exit_hook() -> None:
    """Close the kernel while the interpreter can still run threads.

    Plain `atexit` runs after concurrent.futures has shut its executors, so the kernel's teardown
    (which hands blocking work to threads) failed with "cannot schedule new futures after shutdown".
    `threading._register_atexit` is what concurrent.futures itself uses, and runs before that.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # another Python: the plain hook is the best there is
        atexit.register(close_kernel)
        return
    register(close_kernel)


_register_exit_hook()
