"""Time travel: replaying an agent at several moments equals what was live at those moments."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tobio.config.schema import KernelConfig
from tobio.db.history import agent_history
from tobio.db.migrations import utcnow
from tobio.kernel import Kernel
from tobio.memory.service import Memory

from conftest import write
from helpers import wait_until

pytestmark = pytest.mark.slow

PING = "name: ping\ntype: scripted\nchannels: [hall]\nreplies: ['ping says {text}']\nignore: [ear]\n"
LISTENER = "name: ear\ntype: scripted\nchannels: [hall]\n"


def settle(kernel: Kernel) -> None:
    """Let every agent finish what it is doing, then make sure it is all written."""
    wait_until(lambda: all(a.handled == a.delivered for a in kernel.agents.live.values()))
    time.sleep(0.1)
    kernel.call(kernel.writer.flush())


def live_snapshot(kernel: Kernel, name: str) -> dict[str, Any]:
    settle(kernel)
    at = utcnow()
    agent = kernel.agents.live[name]
    history: dict[int, list[int]] = {}
    for item in kernel.db.call_sync(agent_history, agent.id):
        history.setdefault(item.thread_id, []).append(item.message.id)
    state = kernel.agents.full_state(agent)
    affect = kernel.run(f"emotion show {name} --at {at.isoformat()}").data["affect"]
    time.sleep(0.01)  # later writes get later timestamps
    return {"at": at, "messages": history, "state": state, "affect": affect}


def test_replay_equals_live_snapshots(duckdb_url: str, tmp_path: Path) -> None:
    config = KernelConfig(modules=["scripted", "emotion"], settings={"emotion": {"half_life_s": 30.0}})
    kernel = Kernel(config, database=duckdb_url).start()
    snapshots = []
    try:
        kernel.run(f"agent spawn {write(tmp_path / 'ear.yaml', LISTENER)}")
        kernel.run(f"agent spawn {write(tmp_path / 'ping.yaml', PING)}")
        snapshots.append(live_snapshot(kernel, "ear"))
        kernel.run("channel post hall what a lovely morning")
        snapshots.append(live_snapshot(kernel, "ear"))
        kernel.run("channel post hall you are all useless and I hate this")
        kernel.run("channel sub ear side")
        kernel.run("channel post side a quiet word")
        snapshots.append(live_snapshot(kernel, "ear"))
        kernel.run("channel unsub ear hall")
        kernel.run("channel post hall nobody hears this")
        snapshots.append(live_snapshot(kernel, "ear"))
    finally:
        kernel.close()

    kernel = Kernel(config, database=duckdb_url).start()  # from the database alone, after a restart
    try:
        for snap in snapshots:
            replayed = kernel.run(f"agent replay ear --at {snap['at'].isoformat()}").data
            assert {int(k): v for k, v in replayed["messages"].items() if v} == snap["messages"], snap["at"]
            assert replayed["state"] == snap["state"]
            if replayed["affect"] is None:  # nothing appraised yet: the live mood is the (zero) baseline
                assert all(v == 0 for v in snap["affect"].values())
                continue
            for key, value in snap["affect"].items():
                assert abs(replayed["affect"][key] - value) < 1e-3
        first, last = snapshots[1]["at"].isoformat(), snapshots[3]["at"].isoformat()
        changes = {row[0]: row for row in kernel.run(f"agent replay ear --diff {first} {last}").rows}
        assert any("side" in what and row[2] == "opened" for what, row in changes.items())
        assert any("hall" in what and row[2] == "closed" for what, row in changes.items())
        assert "affect" in changes
    finally:
        kernel.close()


def test_replay_before_the_agent_existed_is_an_error(duckdb_url: str, tmp_path: Path) -> None:
    kernel = Kernel(KernelConfig(modules=["scripted"]), database=duckdb_url).start()
    try:
        kernel.run(f"agent spawn {write(tmp_path / 'ear.yaml', LISTENER)}")
        try:
            kernel.run("agent replay ear --at 2000-01-01T00:00:00")
        except Exception as exc:
            assert "did not exist yet" in str(exc)
        else:
            raise AssertionError("expected an error")
        assert kernel.run("agent replay ear --at=-0s").data["state"] is not None
    finally:
        kernel.close()


def test_replay_shows_what_memory_could_retrieve_then(duckdb_url: str, tmp_path: Path) -> None:
    config = KernelConfig(
        modules=["scripted", "models", "memory"],
        providers={"s": {"type": "scripted", "replies": ["summary"]}},
        models={"embed": {"provider": "s", "model": "x", "purpose": "embed"},
                "summarize": {"provider": "s", "model": "x", "purpose": "summarize"}},
    )
    kernel = Kernel(config, database=duckdb_url).start()
    try:
        kernel.run(f"agent spawn {write(tmp_path / 'ear.yaml', LISTENER)}")
        memory = Memory.of(kernel)

        def moment() -> str:
            kernel.call(memory.settle())
            settle(kernel)
            at = utcnow().isoformat()
            time.sleep(0.01)
            return at

        kernel.run("channel post hall the red train leaves at noon")
        t1 = moment()
        kernel.run("channel post hall the blue train is late")
        t2 = moment()
        first_id = kernel.run("sql SELECT min(id) FROM messages").rows[0][0]
        kernel.run(f"memory forget ear {first_id} --reason test")
        t3 = moment()
        at = {t: kernel.run(f"agent replay ear --at {t}").data["memories"] for t in (t1, t2, t3)}
        assert at[t1] == [f"message:{first_id}"]
        assert len(at[t2]) == 2 and f"message:{first_id}" in at[t2]
        assert f"message:{first_id}" not in at[t3] and len(at[t3]) == 1  # forgotten after t2, not before
        changes = {row[0]: row for row in kernel.run(f"agent replay ear --diff {t1} {t3}").rows}
        assert "memories" in changes
    finally:
        kernel.close()
