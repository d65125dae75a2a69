"""Many agents at once: nothing lost or duplicated, histories match deliveries, failures isolated."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tobio.agents.base import Agent
from tobio.agents.handling import unhandled_counts
from tobio.config.schema import KernelConfig
from tobio.db.history import agent_history
from tobio.hooks import AGENT_TYPE
from tobio.kernel import Kernel
from tobio.messages import Delivery

from conftest import write
from helpers import wait_until

AGENTS, CHANNELS, EACH = 100, 10, 1000


class Recorder(Agent):
    """Remembers exactly what was delivered to it."""

    type_name = "recorder"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, int]] = []

    async def on_message(self, delivery: Delivery) -> None:
        self.seen.append((delivery.thread_id, delivery.message.id))


@pytest.mark.slow
def test_an_agent_with_a_backlog_lets_the_loop_run(duckdb_url: str) -> None:
    """A message handler that never awaits must not hold the loop for a whole backlog: others get turns."""
    kernel = Kernel(KernelConfig(log_level="WARNING"), database=duckdb_url).start()
    try:
        kernel.hooks.add(AGENT_TYPE, Recorder)
        recorder = kernel.call(kernel.agents.spawn(Recorder.Config(name="r", type="recorder", channels=["c"])))
        assert isinstance(recorder, Recorder)

        async def backlog() -> None:
            recorder.pause()
            for n in range(300):
                await kernel.transport.post("c", f"line {n}", role="user")

        kernel.call(backlog())

        async def resume_and_look() -> int:
            recorder.resume()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return len(recorder.seen)

        seen_meanwhile = kernel.call(resume_and_look())
        assert 0 < seen_meanwhile < 300
        wait_until(lambda: len(recorder.seen) == 300)
    finally:
        kernel.close()


@pytest.mark.slow
def test_100_agents_in_10_channels_exchange_1000_messages_each(duckdb_url: str) -> None:
    kernel = Kernel(KernelConfig(log_level="WARNING"), database=duckdb_url).start()
    try:
        kernel.hooks.add(AGENT_TYPE, Recorder)
        for i in range(AGENTS):
            config = Recorder.Config(name=f"a{i}", type="recorder", channels=[f"c{i % CHANNELS}"])
            kernel.call(kernel.agents.spawn(config))
        agents = [kernel.agents.live[f"a{i}"] for i in range(AGENTS)]

        async def chatter(agent: Agent, channel: str) -> None:
            for n in range(EACH):
                await agent.say(channel, f"{agent.name} line {n}")

        async def everyone() -> None:
            await asyncio.gather(*(chatter(a, f"c{i % CHANNELS}") for i, a in enumerate(agents)))

        kernel.call(everyone(), timeout=600)
        per_channel = AGENTS // CHANNELS
        expected_deliveries = EACH * (per_channel - 1)  # everything said in its channel but its own lines
        wait_until(lambda: all(len(a.seen) == expected_deliveries for a in agents), timeout=300)
        kernel.call(kernel.writer.flush())
        totals = kernel.run("sql SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM pushes), "
                            "(SELECT count(*) FROM (SELECT DISTINCT thread_id, message_id FROM pushes))").rows[0]
        assert totals == (AGENTS * EACH, AGENTS * EACH * per_channel, AGENTS * EACH * per_channel)
        assert kernel.db.call_sync(unhandled_counts) == {}  # every delivery is marked handled, durably
        for agent in agents[:: 7]:  # a spread of agents: history == what was delivered (+ its own lines)
            history = kernel.db.call_sync(agent_history, agent.id)
            received = [(i.thread_id, i.message.id) for i in history if i.message.sender != agent.name]
            assert received == sorted(agent.seen)
            assert Counter(agent.seen).most_common(1)[0][1] == 1  # no duplicate delivery
            own = [i for i in history if i.message.sender == agent.name]
            assert len(own) == EACH
    finally:
        kernel.close()


@pytest.mark.slow
def test_failing_provider_is_retried_logged_and_paused_without_stalling_others(duckdb_url: str, tmp_path: Path) -> None:
    config = KernelConfig(
        modules=["scripted", "models", "persona"],
        providers={"bad": {"type": "scripted", "fail_every": 1, "max_retries": 1}, "good": {"type": "scripted", "replies": ["ok"]}},
        models={"broken": {"provider": "bad", "model": "x"}, "fine": {"provider": "good", "model": "x"}},
    )
    kernel = Kernel(config, database=duckdb_url).start()
    try:
        write(tmp_path / "p.yaml", "name: P\n")
        for name, model in (("sick", "broken"), ("well", "fine")):
            text = f"name: {name}\ntype: persona\npersona: p.yaml\nmodel: {model}\nchannels: [room]\nmax_failures: 3\n"
            kernel.run(f"agent spawn {write(tmp_path / (name + '.yaml'), text)}")
        sick, well = kernel.agents.live["sick"], kernel.agents.live["well"]
        for i in range(5):
            kernel.run(f"channel post room message {i}")
        wait_until(lambda: well.turns == 5)  # the healthy agent was never held up
        wait_until(lambda: sick.status == "paused")
        assert sick.failures == 3
        assert [r[2] for r in kernel.run("agent ls").rows if r[0] == "sick"] == ["paused"]
        logs = [r[-1] for r in kernel.run("log tail -n 100 --level WARNING").rows]
        assert any("retry 1/1" in line for line in logs)  # retried before failing
        assert any("paused after 3 failures in a row" in line for line in logs)
        assert sick.inbox.qsize() >= 1  # the rest waits in its inbox, not lost
    finally:
        kernel.close()


def test_messages_passed_over_do_not_break_a_run_of_failures(duckdb_url: str, tmp_path: Path) -> None:
    """Another agent's chatter between two failed turns is passed over, not a success: the failing
    persona is still paused after max_failures turns that failed."""
    config = KernelConfig(
        modules=["scripted", "models", "persona"],
        providers={"bad": {"type": "scripted", "fail_every": 1, "max_retries": 0}},
        models={"broken": {"provider": "bad", "model": "x"}},
    )
    kernel = Kernel(config, database=duckdb_url).start()
    try:
        write(tmp_path / "p.yaml", "name: P\n")
        sick_file = write(tmp_path / "sick.yaml", "name: sick\ntype: persona\npersona: p.yaml\nmodel: broken\nchannels: [room]\nmax_failures: 2\n")
        bot_file = write(tmp_path / "bot.yaml", "name: bot\ntype: scripted\nchannels: [room]\n")
        kernel.run(f"agent spawn {sick_file}")
        kernel.run(f"agent spawn {bot_file}")
        sick, bot = kernel.agents.live["sick"], kernel.agents.live["bot"]
        kernel.run("channel post room first")
        wait_until(lambda: sick.failures == 1)
        kernel.call(bot.say("room", "just a bot passing by"))  # sick passes it over: not its to answer
        wait_until(lambda: sick.handled == 1)
        assert sick.failures == 1
        kernel.run("channel post room second")
        wait_until(lambda: sick.status == "paused")
    finally:
        kernel.close()
