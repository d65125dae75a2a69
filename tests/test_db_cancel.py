"""Cancelling a database call stops that call's statement and never another caller's."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from tobio.db.database import Database

pytestmark = pytest.mark.slow


def _slow(conn: Any, rows: int = 4_000_000_000) -> int:
    """A statement that takes a while on DuckDB unless interrupted (4e9 rows: ~10-40 s; 3e8: ~1-3 s)."""
    return int(conn.execute(sa.text(f"SELECT count(*) FROM range({rows}) t(i) WHERE i % 7 = 3")).scalar())


def test_cancelled_call_that_already_finished_does_not_interrupt_the_next_call(duckdb_url: str) -> None:
    """The race seen at shutdown: an agent's call finished on the DB thread, its awaiting task was then
    cancelled before hearing so, and the interrupt meant for it hit the writer's flush running next."""
    db = Database(duckdb_url)
    db.open()
    try:
        outcome: dict[str, Any] = {}

        def other_caller() -> None:
            try:
                outcome["slow"] = db.call_sync(lambda conn: (time.sleep(0.2), _slow(conn, 300_000_000))[1])
            except Exception as exc:  # recorded for the assertion
                outcome["slow"] = exc

        async def main() -> None:
            quick = asyncio.ensure_future(db.call(lambda conn: conn.execute(sa.text("SELECT 1")).scalar()))
            await asyncio.sleep(0)  # quick is submitted; from here the loop is blocked, so it cannot hear back
            caller = threading.Thread(target=other_caller)
            caller.start()
            time.sleep(0.6)  # quick is done on the DB thread and the slow call is running
            quick.cancel()  # our task hears of the cancel before it hears that quick finished
            await asyncio.gather(quick, return_exceptions=True)
            await asyncio.to_thread(caller.join)

        asyncio.run(main())
        assert isinstance(outcome["slow"], int), f"another caller's statement was interrupted: {outcome['slow']!r}"
        assert db.call_sync(lambda conn: conn.execute(sa.text("SELECT 2")).scalar()) == 2
    finally:
        db.close()


def test_cancelling_a_running_call_interrupts_its_statement(duckdb_url: str) -> None:
    db = Database(duckdb_url)
    db.open()
    try:
        async def main() -> float:
            call = asyncio.ensure_future(db.call(_slow))
            await asyncio.sleep(0.3)
            began = time.perf_counter()
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            # The DB thread is free again soon: the statement was stopped, not waited out.
            await db.call(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
            return time.perf_counter() - began

        assert asyncio.run(main()) < 2.0
        assert db.call_sync(lambda conn: conn.execute(sa.text("SELECT 2")).scalar()) == 2
    finally:
        db.close()


def test_an_interrupt_that_lands_on_the_commit_leaves_the_next_call_working(duckdb_url: str) -> None:
    """A cancelled call's interrupt can arrive after its last statement, while its COMMIT runs (a web page
    closed as the kernel shut down): DuckDB then kept that transaction open and aborted, and the next call,
    the writer's last flush, failed with "Current transaction is aborted". Interrupts are sent at random
    moments just after the statement until some have landed on the commit."""
    db = Database(duckdb_url)
    db.open()
    pick = random.Random(7)
    try:
        db.call_sync(lambda conn: conn.execute(sa.text("CREATE TABLE t (i INT)")))
        landed = 0
        deadline = time.monotonic() + 30
        with ThreadPoolExecutor(1) as caller:
            while landed < 5 and time.monotonic() < deadline:
                ran = threading.Event()

                def read(conn: Any, ran: threading.Event = ran) -> None:
                    conn.execute(sa.text("SELECT count(*) FROM t")).scalar()
                    ran.set()  # from here on, only the COMMIT is left

                call = caller.submit(db.call_sync, read)
                assert ran.wait(30)
                until = time.perf_counter() + pick.random() * 3e-4
                while time.perf_counter() < until:
                    pass
                db.interrupt()
                try:
                    call.result()
                except sa.exc.DBAPIError:
                    landed += 1
                db.call_sync(lambda conn: conn.execute(sa.text("INSERT INTO t VALUES (1)")))  # must work
        assert landed, "no interrupt landed on a COMMIT in 30 s: the race was not exercised"
    finally:
        db.close()
