"""Message transport and subjective history, on every database backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.db.history import agent_history, thread_messages
from tobio.kernel import Kernel

from conftest import make_kernel, write
from helpers import wait_until

ALICE = """
name: alice
type: scripted
channels: [talk]
greeting: "Hi Bob"
replies: ["A{n}"]
reply_to: [bob]
max_replies: 6
delay_s: 0.03
"""
BOB = """
name: bob
type: scripted
channels: [talk]
replies: ["B says {text}"]
reply_to: [alice]
max_replies: 6
delay_s: 0.03
"""
CAROL = "name: carol\ntype: scripted\n"


def channel_ids(kernel: Kernel, channel: str) -> list[int]:
    return [r[0] for r in kernel.run(f"sql SELECT id FROM messages WHERE channel = '{channel}' ORDER BY id").rows]


def history_ids(kernel: Kernel, name: str) -> list[int]:
    agent_id = kernel.agents.live[name].id
    return [item.message.id for item in kernel.db.call_sync(agent_history, agent_id)]


def spawn_from(kernel: Kernel, path: Path) -> None:
    kernel.run(f"agent spawn {path}")


def test_third_agent_sees_exactly_what_was_pushed_after_it_subscribed(db_url: str, tmp_path: Path) -> None:
    kernel = make_kernel(db_url)
    try:
        for name, text in (("bob", BOB), ("alice", ALICE.replace("{n}", "")), ("carol", CAROL)):
            spawn_from(kernel, write(tmp_path / f"{name}.yaml", text))
        wait_until(lambda: len(channel_ids(kernel, "talk")) >= 5)
        carol = kernel.agents.live["carol"]

        async def subscribe_midway() -> tuple[int, int]:
            boundary = kernel.db._next_ids["messages"]  # first id carol can receive
            thread_id = await kernel.transport.subscribe(carol, "talk")
            return boundary, thread_id

        boundary, thread_id = kernel.call(subscribe_midway())
        wait_until(lambda: len(channel_ids(kernel, "talk")) == 13)  # greeting + 6 + 6
        kernel.call(kernel.writer.flush())
        everything = channel_ids(kernel, "talk")
        expected = [i for i in everything if i >= boundary]
        assert 0 < len(expected) < len(everything)
        assert history_ids(kernel, "carol") == expected
        assert [m.id for m in kernel.db.call_sync(thread_messages, thread_id)] == expected
        wait_until(lambda: carol.handled == len(expected))  # what was delivered is what is recorded
        # The talkers experienced the whole conversation, their own lines included.
        assert history_ids(kernel, "alice") == everything
        assert history_ids(kernel, "bob") == everything
        contents = [r[0] for r in kernel.run("sql SELECT content FROM messages ORDER BY id").rows]
        assert contents[:3] == ["Hi Bob", "B says Hi Bob", "A"]
    finally:
        kernel.close()


def test_unsubscribe_closes_the_thread(db_url: str, tmp_path: Path) -> None:
    kernel = make_kernel(db_url)
    try:
        spawn_from(kernel, write(tmp_path / "carol.yaml", CAROL))
        kernel.run("channel sub carol news")
        kernel.run("channel post news one")
        kernel.run("channel unsub carol news")
        kernel.run("channel post news two")
        assert [m for m in _contents(kernel, "carol")] == ["one"]
        threads = kernel.run("thread ls --agent carol").records()
        assert len(threads) == 1 and threads[0]["closed"] is not None and threads[0]["messages"] == 1
        kernel.run("channel sub carol news")  # a new subscription is a new thread
        kernel.run("channel post news three")
        assert _contents(kernel, "carol") == ["one", "three"]
        assert len(kernel.run("thread ls --agent carol --open").rows) == 1
    finally:
        kernel.close()


def _contents(kernel: Kernel, name: str) -> list[str]:
    return [item.message.content for item in kernel.db.call_sync(agent_history, kernel.agents.live[name].id)]


@pytest.mark.slow
def test_restart_brings_back_agents_subscriptions_and_state(db_url: str, tmp_path: Path) -> None:
    write(tmp_path / "conf" / "agents" / "echo.yaml", "name: echo\ntype: scripted\nchannels: [lobby]\nreplies: ['e:{text}']\n")
    config_path = write(tmp_path / "conf" / "kernel.yaml", "modules: [scripted]\nagents: [agents/*.yaml]\n")
    kernel = Kernel(config_path, database=db_url).start()
    try:
        kernel.run("agent spawn " + str(write(tmp_path / "carol.yaml", CAROL)))
        kernel.run("channel sub carol lobby")
        kernel.run("channel sub carol side")
        for text in ("one", "two", "three"):
            kernel.run(f"channel post lobby {text}")
        echo = kernel.agents.live["echo"]
        wait_until(lambda: echo.sent == 3)
        kernel.run("agent pause carol")
        threads_before = sorted(kernel.run("thread ls --open").rows)
        state_rows_before = kernel.run("sql SELECT count(*) FROM state").rows[0][0]
    finally:
        kernel.close()

    config = KernelConfig(modules=["scripted"])  # no agent files: everything must come from the database
    kernel = Kernel(config, database=db_url).start()
    try:
        assert sorted(kernel.agents.live) == ["carol", "echo"]
        assert kernel.agents.live["echo"].state_dict()["sent"] == 3
        assert kernel.agents.live["carol"].status == "paused"
        assert sorted(kernel.run("thread ls --open").rows) == threads_before
        assert kernel.run("sql SELECT count(*) FROM state").rows[0][0] == state_rows_before
        kernel.run("channel post lobby four")
        wait_until(lambda: _contents(kernel, "echo")[-2:] == ["four", "e:four"])
        assert kernel.agents.live["carol"].inbox.qsize() >= 1  # paused: waiting, not lost
        kernel.run("agent resume carol")
        wait_until(lambda: kernel.agents.live["carol"].inbox.qsize() == 0)
    finally:
        kernel.close()


def test_kill_closes_threads_and_is_not_restored(db_url: str, tmp_path: Path) -> None:
    kernel = make_kernel(db_url)
    try:
        spawn_from(kernel, write(tmp_path / "carol.yaml", CAROL))
        kernel.run("channel sub carol lobby")
        kernel.run("agent kill carol")
        assert kernel.run("thread ls --open").rows == []
        assert "carol" not in [r[0] for r in kernel.run("agent ls").rows]
        assert [r[2] for r in kernel.run("agent ls --all").rows] == ["killed"]
    finally:
        kernel.close()
    kernel = make_kernel(db_url)
    try:
        assert kernel.agents.live == {}
    finally:
        kernel.close()


def test_state_history_keeps_every_superseded_state(db_url: str, tmp_path: Path) -> None:
    kernel = make_kernel(db_url)
    try:
        spawn_from(kernel, write(tmp_path / "e.yaml", "name: e\ntype: scripted\nchannels: [c]\nreplies: [ok]\n"))
        for i in range(3):
            kernel.run(f"channel post c m{i}")
            wait_until(lambda i=i: kernel.agents.live["e"].sent == i + 1)
        kernel.call(asyncio.sleep(0.05))
        history = kernel.run("agent state e --history").rows
        assert [row[2]["sent"] for row in history] == [0, 1, 2, 3]
        assert all(row[1] is not None for row in history[:-1]) and history[-1][1] is None
    finally:
        kernel.close()


def test_group_commit_batches_concurrent_posts(duckdb_url: str) -> None:
    kernel = make_kernel(duckdb_url)
    try:

        async def burst() -> None:
            await asyncio.gather(*(kernel.transport.post("load", f"m{i}") for i in range(500)))

        before = kernel.writer.batches
        kernel.call(burst())
        assert kernel.run("sql SELECT count(*) FROM messages WHERE channel = 'load'").rows == [(500,)]
        assert kernel.writer.batches - before < 50  # 500 posts, a handful of transactions
    finally:
        kernel.close()


def test_a_batch_of_posts_is_pushed_and_delivered_in_order_to_each_receiver(db_url: str) -> None:
    """Posts to two channels, some by a subscriber, committed together: every receiver gets its share in
    id order on the right thread, senders not their own, and the pushes say the same."""
    from tobio.messages import Delivery

    class Recorder:
        def __init__(self, receiver_id: int, name: str) -> None:
            self.id, self.name, self.got = receiver_id, name, []

        def deliver(self, delivery: Delivery) -> None:
            self.got.append(delivery)

        def deliver_many(self, deliveries: list[Delivery]) -> None:
            self.got.extend(deliveries)

    kernel = make_kernel(db_url)
    try:
        channels = {"x": ["a", "b"], "y": ["b"], "z": ["a", "b"]}
        receivers = {name: Recorder(900 + i, name) for i, name in enumerate(channels)}
        threads = {(name, channel): kernel.call(kernel.transport.subscribe(receivers[name], channel))
                   for name, subscribed in channels.items() for channel in subscribed}

        async def burst() -> None:
            posts = [kernel.transport.post("a" if i % 3 else "b", f"m{i}", role="user") for i in range(60)]
            posts += [kernel.transport.post("b", f"z{i}", sender=receivers["z"]) for i in range(5)]
            await asyncio.gather(*posts)

        before = kernel.writer.batches
        kernel.call(burst())
        assert kernel.writer.batches - before < 30  # batched, so the grouping by receiver is exercised
        rows = kernel.run("sql SELECT id, channel, agent_id FROM messages ORDER BY id").rows
        for name, receiver in receivers.items():
            expected = [(mid, threads[(name, channel)]) for mid, channel, sender in rows
                        if channel in channels[name] and sender != receiver.id]
            assert [(d.message.id, d.thread_id) for d in receiver.got] == expected, name
        pushes = set(kernel.run("sql --limit=10000 SELECT thread_id, message_id FROM pushes").rows)
        assert pushes == {(threads[(name, channel)], mid) for name in channels for mid, channel, _ in rows
                          if channel in channels[name]}
    finally:
        kernel.close()


def test_an_after_commit_callback_that_fails_does_not_stop_the_batch(duckdb_url: str) -> None:
    kernel = make_kernel(duckdb_url)
    seen: list[int] = []

    def broken(items: list[int]) -> None:
        raise RuntimeError("boom")

    try:
        async def writes() -> None:
            from tobio.db.migrations import utcnow
            from tobio.transport import CHANNEL_COLUMNS

            await asyncio.gather(
                kernel.writer.write(("channels", CHANNEL_COLUMNS, [("c1", "", utcnow())]), after=(broken, 1)),
                kernel.writer.write(("channels", CHANNEL_COLUMNS, [("c2", "", utcnow())]), after=(seen.extend, 2)),
            )

        kernel.call(writes())
        assert seen == [2]
        assert {r[0] for r in kernel.run("sql SELECT name FROM channels").rows} >= {"c1", "c2"}
    finally:
        kernel.close()


def test_rows_for_an_unknown_table_are_refused_when_queued_and_spoil_no_batch(duckdb_url: str) -> None:
    """A module's write to a table the schema lacks fails at once, for that module; the posts queued with
    it in the same group commit land as if it had never been tried."""
    kernel = make_kernel(duckdb_url, log_level="WARNING")
    try:
        async def mixed() -> list[str]:
            errors = []
            posting = [asyncio.ensure_future(kernel.transport.post("c", f"line {n}", role="user")) for n in range(5)]
            for bad in [("no_such_table", ("id",), [(1,)]), ("messages", ("id", "no_such_column"), [(1, 2)])]:
                try:
                    kernel.writer.queue(bad)
                except ValueError as exc:
                    errors.append(str(exc))
            await asyncio.gather(*posting)
            return errors

        errors = kernel.call(mixed())
        assert errors == ["no table 'no_such_table' in the schema (a module's table belongs on tobio.db.tables.metadata)",
                          "table 'messages' has no column 'no_such_column'"]
        assert len(channel_ids(kernel, "c")) == 5
        async def awaited() -> None:
            await kernel.writer.write(("no_such_table", ("id",), [(1,)]))

        with pytest.raises(ValueError, match="no table 'no_such_table'"):
            kernel.call(awaited())
    finally:
        kernel.close()
