"""One worker thread that serves replies before background work.

Every generation on the embedded model runs on one long-lived thread (llama.cpp's OpenMP builds a new
thread team for each new calling thread, which cost ~12% of tokens/s when each generation had a fresh
thread). With a plain FIFO, a reply queued just after a summary (160 tokens, ~3 s) waited for all of
it before its first token.

The thread is not a daemon: interpreter teardown beside a native call still running on a daemon thread
crashes the process. Instead it ends with the program's main thread: once that has finished, it calls
`on_orphaned` (the model host stops its generations and frees its models), runs what is queued (stop
flags make that quick), and returns, so a script that never closed its kernel still exits cleanly,
with no exit hook.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

FAIRNESS = 4  # foreground jobs served in a row, while background work waits, before one background job
ORPHAN_POLL_S = 0.5  # how often an idle worker checks that the program's main thread still runs


def main_thread_finished() -> bool:
    """Whether the program's main thread has returned (the interpreter is on its way out)."""
    return not threading.main_thread().is_alive()



class PriorityThread:
    """A single-thread executor with two FIFO queues: foreground jobs before background ones.

    Running work is not pre-empted, but may step aside itself (`foreground_waiting`). So that background work (summaries keeping prompts inside their
    budget) cannot starve under a steady stream of replies, one background job is served after every
    FAIRNESS foreground jobs that went ahead of it: a bounded delay that needs no clock, and in the
    usual case (a human typing, agents taking turns) replies still never wait behind a summary queued
    after them.
    """

    def __init__(self, name: str, *, on_orphaned: Callable[[], None] | None = None) -> None:
        self._name = name
        self._on_orphaned = on_orphaned
        self._orphaned = False
        self._queues: tuple[deque[tuple[Future[Any], Callable[[], Any]]], ...] = (deque(), deque())
        self._ready = threading.Condition()
        self._streak = 0  # foreground jobs served since a background job began waiting
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[], T], *, background: bool = False) -> Future[T]:
        """Queue `fn`; the future holds its result or exception."""
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("cannot schedule new work after shutdown")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=False)  # see above
                self._thread.start()
            self._queues[background].append((future, fn))
            self._ready.notify()
        return future

    def foreground_waiting(self) -> bool:
        """Whether a reply is queued: long background work that can stop part-way (a prefill) checks this."""
        return bool(self._queues[0])

    def _next(self) -> tuple[Future[Any], Callable[[], Any]] | Literal["orphaned"] | None:
        """The job to run next (None once shut down and drained; "orphaned", once, when the main thread has
        finished); call with the condition held."""
        foreground, background = self._queues
        while True:
            if not self._orphaned and main_thread_finished():
                self._orphaned = self._closed = True
                return "orphaned"
            if foreground or background:
                break
            if self._closed:
                return None
            self._ready.wait(ORPHAN_POLL_S)
        if background and (not foreground or self._streak >= FAIRNESS):
            self._streak = 0
            return background.popleft()
        self._streak = self._streak + 1 if background else 0
        return foreground.popleft()

    def _work(self) -> None:
        while True:
            with self._ready:
                job = self._next()
            if job is None:
                return
            if job == "orphaned":
                if self._on_orphaned is not None:
                    self._on_orphaned()
                continue
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, timeout: float | None = None) -> None:
        """Refuse new work, let queued jobs run (callers' stop flags make them quick), and wait for the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
