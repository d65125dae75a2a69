"""One Conversation for every front end, on a real kernel: drafts stream, the posted message replaces
the draft, stop cancels the agent's run (and the runs its turn starts after it), close removes the
listener, and `exchange()` is one prompt of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from storyteller import storyteller

from tobio.agents.conversation import exchange
from tobio.conversation import Conversation, Reply, Response
from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.messages import Delta

from conftest import write
from helpers import wait_until


def persona_kernel(url: str, tmp_path: Path, *, latency: float = 0.0) -> Kernel:
    """The storyteller `tobio`, and a streaming scripted `echo`."""
    kernel = storyteller(url, tmp_path, latency=latency, greeting="Hi! Who are you?")
    echo = "name: echo\ntype: scripted\nstream: true\ntoken_delay_s: 0.02\nreplies: ['You said: {text}']\n"
    kernel.run(f"agent spawn {write(tmp_path / 'echo.yaml', echo)}")
    return kernel


@pytest.fixture
def kernel(duckdb_url: str, tmp_path: Path) -> Iterator[Kernel]:
    kernel = persona_kernel(duckdb_url, tmp_path)
    try:
        yield kernel
    finally:
        kernel.close()


def listeners(kernel: Kernel, channel: str) -> int:
    return len(kernel.transport._listeners.get(channel, ()))


async def runs_of(kernel: Kernel, agent: str) -> list[dict[str, Any]]:
    return (await kernel.arun(f"run ls --agent {agent} -n 50")).records()


def test_a_prompt_streams_drafts_then_the_posted_reply(kernel: Kernel) -> None:
    async def talk() -> list[str]:
        async with Conversation(kernel, "echo") as conversation:  # on this loop, not the kernel's
            response = await conversation.prompt("tell me more about it")
            texts = [f"{reply.state}:{reply.text}" async for reply in response.updates(timeout=20)]
            assert response.said is not None and response.said.content == "tell me more about it"
            return texts

    texts = asyncio.run(talk())
    assert texts[0].startswith("streaming:You")  # word by word, before the whole message
    assert texts[-1] == "posted:You said: tell me more about it"
    assert len(texts) >= 3


def test_a_new_conversation_hears_the_greeting_it_asked_for(kernel: Kernel) -> None:
    async def talk() -> list[tuple[str, str, str]]:
        seen: list[tuple[str, str, str]] = []
        conversation = Conversation(kernel, "tobio", on_reply=lambda r: seen.append((r.sender, r.state, r.text)))
        await conversation.open(greet=True)
        heard = list(seen)  # heard by the time open returns: the shell prints it before its "talking with"
        await conversation.aclose()
        return heard

    assert asyncio.run(talk()) == [("tobio", "posted", "Hi! Who are you?")]


def test_the_posted_message_replaces_a_different_draft(kernel: Kernel) -> None:
    """A stale draft resampled or a recited instruction cut: what was posted is what is shown."""
    seen: list[tuple[str, str]] = []
    conversation = Conversation(kernel, "echo", on_reply=lambda r: seen.append((r.state, r.text)))
    kernel.call(conversation.open())  # its home is the kernel's loop: each item is handled as it comes
    echo = kernel.agents.live["echo"]
    channel = conversation.channel

    async def turn() -> None:
        for piece in ("Trains are great! ", "You are Tobio."):
            kernel.transport.stream(channel, Delta(channel, "echo", "s1", piece))
        kernel.transport.stream(channel, Delta(channel, "echo", "s1", "", done=True))
        await kernel.transport.post(channel, "Trains are great!", sender=echo, metadata={"stream_id": "s1"})

    with conversation:
        kernel.call(turn())
    assert seen == [("streaming", "Trains are great! "), ("streaming", "Trains are great! You are Tobio."),
                    ("streamed", "Trains are great! You are Tobio."), ("posted", "Trains are great!")]
    assert conversation.in_progress() == []


def test_a_draft_whose_turn_ended_without_a_message_is_lost_not_left_pending(kernel: Kernel) -> None:
    seen: list[tuple[str, str]] = []
    conversation = Conversation(kernel, "echo", on_reply=lambda r: seen.append((r.state, r.text)))
    kernel.call(conversation.open())
    channel = conversation.channel

    async def failed_turn() -> None:  # streamed, then the turn failed before posting
        kernel.transport.stream(channel, Delta(channel, "echo", "s9", "half a thou"))
        kernel.transport.stream(channel, Delta(channel, "echo", "s9", "", done=True))

    with conversation:
        kernel.call(failed_turn())
        assert [r.state for r in conversation.in_progress()] == ["streamed"]
        kernel.call(conversation.say("hello?"))  # the agent is idle: that draft will never be posted
        wait_until(lambda: seen[-1][0] == "posted")
    assert ("lost", "half a thou") in seen and seen[-1] == ("posted", "You said: hello?")


def test_stop_cancels_the_agents_run_within_a_second(kernel: Kernel) -> None:
    async def talk() -> tuple[list[Reply], float, list[dict[str, Any]]]:
        async with Conversation(kernel, "tobio") as conversation:
            response = await conversation.prompt("tell me a long story")
            async for reply in response.updates(timeout=30):
                if reply.draft.strip():
                    break  # the model is generating
            began = time.monotonic()
            stopped = conversation.stop()
            while True:
                runs = await runs_of(kernel, "tobio")
                if runs and runs[-1]["status"] == "cancelled":
                    break
                assert time.monotonic() - began < 1.0, runs
                await asyncio.sleep(0.02)
            took = time.monotonic() - began
            await kernel.acall(_turn_over(kernel, "tobio"))
            return stopped, took, await runs_of(kernel, "tobio")

    stopped, took, runs = asyncio.run(talk())
    assert [r.state for r in stopped] == ["stopped"] and stopped[0].draft.startswith("word0")
    assert len(stopped[0].draft.split()) < 100  # cut in the middle, not streamed to the end
    assert took < 1.0
    assert {r["status"] for r in runs} == {"cancelled"}, runs  # nothing the turn started afterwards ran on
    assert kernel.agents.live["tobio"].failures == 0


def test_stop_ends_a_turn_even_before_its_first_token(duckdb_url: str, tmp_path: Path) -> None:
    kernel = persona_kernel(duckdb_url, tmp_path, latency=3.0)
    try:
        async def talk() -> list[dict[str, Any]]:
            async with Conversation(kernel, "tobio") as conversation:
                await conversation.prompt("are you there?")
                await kernel.acall(_until_running(kernel, "tobio"))
                assert conversation.stop() == []  # nothing streamed yet
                await kernel.acall(_turn_over(kernel, "tobio"))
                return await runs_of(kernel, "tobio")

        runs = asyncio.run(talk())
        # (a persona resamples a reply it finds stale, here an empty one: those runs are stopped too)
        assert runs and {r["status"] for r in runs} == {"cancelled"}, runs
    finally:
        kernel.close()


def test_close_removes_the_listener(kernel: Kernel) -> None:
    channel = "dm.user.echo"
    before = listeners(kernel, channel)
    conversation = Conversation(kernel, "echo")
    kernel.call(conversation.open())
    assert listeners(kernel, channel) == before + 1
    kernel.call(conversation.aclose())
    assert listeners(kernel, channel) == before
    conversation.close()  # twice is fine

    async def in_and_out() -> int:
        async with Conversation(kernel, "echo"):
            return listeners(kernel, channel)

    assert asyncio.run(in_and_out()) == before + 1
    assert listeners(kernel, channel) == before


def test_a_failed_open_leaves_no_listener(kernel: Kernel) -> None:
    conversation = Conversation(kernel, "nobody")
    with pytest.raises(TobioError, match="nobody"):
        kernel.call(conversation.open())
    assert listeners(kernel, "dm.user.nobody") == 0 and not conversation.is_open
    with pytest.raises(TobioError, match="not open"):
        kernel.call(conversation.say("hello"))


def test_a_broken_front_end_does_not_break_the_agents_reply(kernel: Kernel) -> None:
    def broken(_reply: Reply) -> None:
        raise RuntimeError("drawing failed")

    async def talk() -> str:
        async with Conversation(kernel, "echo", on_reply=broken) as conversation:
            reply = await (await conversation.prompt("still there?")).wait(20)
            return reply.text

    assert asyncio.run(talk()) == "You said: still there?"


def test_exchange_returns_the_reply_and_removes_its_listener(kernel: Kernel) -> None:
    message = kernel.call(exchange(kernel, "echo", "one line", timeout=20))
    assert message.content == "You said: one line" and message.sender == "echo"
    assert listeners(kernel, "dm.user.echo") == 0


def test_exchange_out_of_time_stops_the_run(kernel: Kernel) -> None:
    with pytest.raises(TobioError, match="tobio did not answer within 0.5 s"):
        kernel.call(exchange(kernel, "tobio", "tell me everything", timeout=0.5))
    kernel.call(_turn_over(kernel, "tobio"))
    assert {r["status"] for r in kernel.run("run ls --agent tobio").records()} == {"cancelled"}
    assert listeners(kernel, "dm.user.tobio") == 0


async def _until_running(kernel: Kernel, agent: str, timeout: float = 20.0) -> None:
    """On the kernel's loop: until the agent has a live model run."""
    target = kernel.agents.live[agent]
    deadline = time.monotonic() + timeout
    while not [r for r in _all_live(kernel) if r.agent_id == target.id]:
        assert time.monotonic() < deadline, f"{agent} started no run"
        await asyncio.sleep(0.02)


def _all_live(kernel: Kernel) -> list[Any]:
    from tobio.models.module import runs_of as live_runs

    return list(live_runs(kernel).live.values())


async def _turn_over(kernel: Kernel, agent: str, timeout: float = 20.0) -> None:
    """On the kernel's loop: until the agent has handled every message it got and no run of it is live."""
    target = kernel.agents.live[agent]
    deadline = time.monotonic() + timeout
    while target.current is not None or target.handled < target.delivered or [
            r for r in _all_live(kernel) if r.agent_id == target.id]:
        assert time.monotonic() < deadline, f"{agent}'s turn did not end"
        await asyncio.sleep(0.02)
    await kernel.writer.flush()


def test_stopping_a_reader_as_an_update_arrives_stops_it() -> None:
    """Ctrl-C (a cancelled reader) that lands just as the reply changes must stop the reader. With
    `asyncio.wait_for` on Python 3.11 the cancellation was swallowed and the reader waited on for the
    next change, which never came: the front end hung until the reply was done."""

    async def scenario() -> str:
        response = Response(None)  # type: ignore[arg-type]  # the conversation names the agent only in errors
        seen: list[str] = []

        async def reader() -> None:
            async for reply in response.updates(timeout=30.0):  # as the front ends read (with a limit)
                seen.append(reply.draft)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)  # the reader waits for a change
        response._update(Reply("ada", draft="Hel"))
        task.cancel()  # the same moment: the change and the stop
        try:
            await asyncio.wait_for(asyncio.shield(task), 2.0)
        except asyncio.CancelledError:
            return "stopped"
        except TimeoutError:
            task.cancel()
            return "hung"
        return "finished"

    assert asyncio.run(scenario()) == "stopped"
