"""The embedded model's one thread serves replies before background work, without starving it."""

from __future__ import annotations

import threading

import pytest

from tobio.providers.local import LocalConfig
from tobio.providers.model_host import ModelHost
from tobio.providers.priority import FAIRNESS, PriorityThread


def order_served(pool: PriorityThread, jobs: list[tuple[str, bool]]) -> list[str]:
    """Block the thread with a first job, queue `jobs` (name, background) behind it, release, record order."""
    started, release, order = threading.Event(), threading.Event(), []
    blocker = pool.submit(lambda: (started.set(), release.wait()))
    assert started.wait(10)
    futures = [pool.submit(lambda name=name: order.append(name), background=background) for name, background in jobs]
    release.set()
    blocker.result(timeout=10)
    for future in futures:
        future.result(timeout=10)
    return order


def test_a_reply_queued_behind_background_work_goes_first() -> None:
    jobs = [("summary", True), ("reflection", True), ("facts", True), ("reply", False), ("reply 2", False)]
    host = ModelHost(LocalConfig())  # the local provider's llama thread
    try:
        assert order_served(host.worker, jobs) == ["reply", "reply 2", "summary", "reflection", "facts"]
    finally:
        host.close()


def test_background_work_is_served_after_a_bounded_number_of_replies() -> None:
    jobs = [("summary", True)] + [(f"reply {i}", False) for i in range(FAIRNESS + 2)]
    order = order_served(PriorityThread("test"), jobs)
    # The blocking job was a reply served while nothing waited; then FAIRNESS replies went ahead.
    assert order.index("summary") == FAIRNESS


def test_shutdown_runs_what_was_queued_and_refuses_more() -> None:
    pool = PriorityThread("test")
    release, done = threading.Event(), []
    pool.submit(release.wait)
    queued = pool.submit(lambda: done.append(1), background=True)
    stopper = threading.Thread(target=pool.shutdown)
    stopper.start()
    release.set()
    stopper.join(10)
    assert queued.result(timeout=1) is None and done == [1]
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_a_failing_job_reports_its_exception() -> None:
    pool = PriorityThread("test")
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=10)
    assert pool.submit(lambda: 2).result(timeout=10) == 2
