"""The web UI end to end in a real headless Chromium (Debian's package, driven over its DevTools pipe: tests/browser.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import browser, click_button, holding, network, requested, say, wait, wait_element, wait_gone, wait_text
from storyteller import STORY, storyteller

from tobio.config.schema import KernelConfig
from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.web.history import opening_agent
from tobio.web.serve import serve

from conftest import write
from helpers import wait_until

REPLY = "echo says: {text} and then a few more words to stream"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chat_page_streams_a_reply(duckdb_url: str, tmp_path: Path) -> None:
    kernel = Kernel(KernelConfig(modules=["scripted", "emotion"]), database=duckdb_url).start()
    server = None
    try:
        agent = f"name: echo\ntype: scripted\nstream: true\ntoken_delay_s: 0.15\nreplies: ['{REPLY}']\n"
        kernel.run(f"agent spawn {write(tmp_path / 'echo.yaml', agent)}")
        server = serve(kernel, "127.0.0.1", free_port())
        final = REPLY.format(text="hello web")
        shown: list[str] = []  # the reply's text each time the page was looked at

        def whole_reply() -> bool:
            found = holding(page, "echo says:")
            shown.append(found[0] if found else "")
            return final in shown[-1]

        with browser() as page:
            page.get(server.url)
            say(page, "hello web")
            wait(page, whole_reply, 60, "the reply never arrived whole")
            wait_element(page, "#trace", 10)  # the sidebar's mood trace (emotion plot), shown
            drawn = "const t = document.getElementById('trace'); return t.src.startsWith('data:image/svg+xml;base64,') && t.complete && t.naturalWidth === 800"
            wait(page, lambda: page.execute_script(drawn), 10, "the mood trace is not a drawn SVG")
            # the page's Content-Security-Policy is in force in the browser: an inline script does not run
            inline = "const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.body.append(s)"
            page.execute_script(inline)
            assert page.execute_script("return window.__ran") is None
            shot = tmp_path / "web.png"
            assert page.save_screenshot(str(shot))
            asked = requested(network(page))
        assert [text for text in shown if text and final not in text], "the reply arrived all at once, not streamed"
        # everything the page loads comes from the server itself (or is inline data): no CDN, no other host
        assert asked and all(url.startswith((server.url, "data:", server.url.replace("http", "ws", 1))) for url in asked), asked
        assert {f"{server.url}static/app.js", f"{server.url}static/app.css", f"{server.url.replace('http', 'ws', 1)}ws"} <= set(asked)
        assert shot.stat().st_size > 10_000
        kernel.call(kernel.writer.flush())
        stored = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.user.echo' ORDER BY id").rows
        assert stored == [("hello web",), (final,)]  # the page is the shell's person: same channel as `chat echo`
    finally:
        if server is not None:
            server.stop()
        kernel.close()


def test_serving_off_loopback_needs_a_token(duckdb_url: str) -> None:
    kernel = Kernel(KernelConfig(), database=duckdb_url).start()
    try:
        with pytest.raises(TobioError, match="serving on 0.0.0.0 needs --token"):
            serve(kernel, "0.0.0.0", free_port())
    finally:
        kernel.close()


# -- the agent the page opens on, and the conversation so far ------------------------------------------

def _persona_kernel(url: str, tmp_path: Path, **settings: Any) -> Kernel:
    """`echo` (scripted) spawned first, then the persona `tobio`: alphabetical order would pick echo."""
    config = KernelConfig(modules=["scripted", "persona", "web"], settings=settings,
                          providers={"s": {"type": "scripted", "replies": ["the lighthouse keeper remembers"]}},
                          models={"chat-default": {"provider": "s", "model": "x"}})
    kernel = Kernel(config, database=url).start()
    write(tmp_path / "tobio-persona.yaml", "name: Tobio\ndescription: A friend.\n")
    echo = write(tmp_path / "echo.yaml", "name: echo\ntype: scripted\n")
    kernel.run(f"agent spawn {echo}")
    agent = "name: tobio\ntype: persona\npersona: tobio-persona.yaml\nchannels: []\nstream: false\n"
    kernel.run(f"agent spawn {write(tmp_path / 'tobio.yaml', agent)}")
    return kernel


@pytest.fixture
def persona_kernel(duckdb_url: str, tmp_path: Path) -> Iterator[Kernel]:
    kernel = _persona_kernel(duckdb_url, tmp_path)
    try:
        yield kernel
    finally:
        kernel.close()


def test_opening_agent_is_the_setting_else_the_first_persona(persona_kernel: Kernel, tmp_path: Path) -> None:
    assert opening_agent(persona_kernel) == ("tobio", "")  # no setting: the persona, not alphabetical `echo`
    assert opening_agent(persona_kernel, "echo") == ("echo", "")
    agent, note = opening_agent(persona_kernel, "nobody")
    assert agent == "tobio" and note == "default_agent 'nobody' is not running; talking with tobio"


def test_default_agent_setting_is_read_from_kernel_yaml(duckdb_url: str, tmp_path: Path) -> None:
    kernel = _persona_kernel(duckdb_url, tmp_path, web={"default_agent": "echo"})
    try:
        assert opening_agent(kernel) == ("echo", "")
    finally:
        kernel.close()
    with pytest.raises(TobioError, match="settings.web.default_agnet"):  # a typo is an error, not ignored
        Kernel(KernelConfig(modules=["web"], settings={"web": {"default_agnet": "x"}}), database=duckdb_url).start()


@pytest.mark.slow
def test_page_opens_on_the_persona_with_the_conversation_so_far(persona_kernel: Kernel) -> None:
    kernel = persona_kernel

    async def earlier() -> None:  # what the person said at the shell (`chat tobio`) before opening the page
        me, channel = await kernel.agents.open_dm("user", "tobio")
        await me.say(channel, "do you remember the lighthouse?", role="user")

    kernel.call(earlier())
    wait_until(lambda: kernel.agents.live["tobio"].turns == 1)
    server = serve(kernel, "127.0.0.1", free_port())
    try:
        with browser() as page:
            page.get(server.url)
            wait_text(page, "do you remember the lighthouse?", 60)
            wait_text(page, "the lighthouse keeper remembers", 10)
            picker = wait_element(page, "select")
            assert picker.value == "tobio"
            say(page, "and the boat?")
            wait_until(lambda: kernel.agents.live["tobio"].turns == 2, timeout=30)
            wait(page, lambda: len(holding(page, "the lighthouse keeper remembers")) == 2, 10)
            # the agent picker: another agent, its own (empty) conversation; back, and ours is there again
            assert sorted(picker.call("function() { return [...this.options].map((o) => o.text); }")) == ["echo", "tobio"]
            picker.select("echo")
            wait_gone(page, "the lighthouse keeper remembers", 10)
            picker.select("tobio")
            wait_text(page, "and the boat?", 10)
            assert len(holding(page, "the lighthouse keeper remembers")) == 2
        kernel.call(kernel.writer.flush())
        said = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.user.tobio' ORDER BY id").rows
        assert [row[0] for row in said] == ["do you remember the lighthouse?", "the lighthouse keeper remembers",
                                            "and the boat?", "the lighthouse keeper remembers"]
    finally:
        server.stop()


@pytest.mark.slow
def test_the_stop_button_cancels_the_agents_run(duckdb_url: str, tmp_path: Path) -> None:
    """Stop while the persona's reply streams (a 30 s story): its model run ends `cancelled`, the reply
    is cut short, and the turn starts no other run afterwards. (How fast Stop acts is not timed here.)"""
    kernel = storyteller(duckdb_url, tmp_path, modules=("web",))
    server = None
    try:
        server = serve(kernel, "127.0.0.1", free_port())
        with browser() as page:
            page.get(server.url)
            say(page, "tell me a long story")
            wait_text(page, "word0 word1 word2", 30)  # streaming
            click_button(page, "Stop")
            runs: list[dict[str, Any]] = []

            def cancelled() -> bool:
                runs[:] = kernel.run("run ls --agent tobio").records()
                return runs[-1]["status"] == "cancelled"

            try:
                wait_until(cancelled, timeout=10)  # a 30 s story: still running unless Stop worked
            except AssertionError:
                raise AssertionError(f"Stop did not cancel the run: {runs}") from None
            wait_until(lambda: kernel.agents.live["tobio"].current is None, timeout=20)
            wait_element(page, "#send", 10)  # the page offers Send again
            assert not wait_element(page, "#stop", visible=False).is_displayed()
        runs = kernel.run("run ls --agent tobio").records()
        assert {r["status"] for r in runs} == {"cancelled"}, runs
        kernel.call(kernel.writer.flush())
        said = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.user.tobio' ORDER BY id").rows
        assert said[0] == ("tell me a long story",)
        assert len(said[-1][0].split()) < len(STORY.split()) // 3  # stopped well before the story's end
    finally:
        if server is not None:
            server.stop()
        kernel.close()


def test_the_stop_request_cancels_the_run_over_the_websocket(duckdb_url: str, tmp_path: Path) -> None:
    """The same without a browser: the page's websocket, a `say` whose reply streams, and a `stop` request
    end the model run as `cancelled`; closing the socket leaves no listener behind."""
    import asyncio
    import json

    from tornado.websocket import websocket_connect

    kernel = storyteller(duckdb_url, tmp_path, modules=("web",))
    server = None
    try:
        server = serve(kernel, "127.0.0.1", free_port(), default_agent="tobio")
        url = server.url.replace("http", "ws", 1) + "ws"

        async def talk() -> tuple[float, list[dict[str, Any]]]:
            from tornado.httpclient import HTTPRequest

            ws = await websocket_connect(HTTPRequest(url, headers={"Origin": server.url.rstrip("/")}))
            heard: list[dict[str, Any]] = []

            async def until(check: Any) -> dict[str, Any]:
                deadline = time.monotonic() + 30
                while True:
                    left = deadline - time.monotonic()
                    assert left > 0, heard[-5:]
                    text = await asyncio.wait_for(ws.read_message(), left)
                    assert text is not None, "the server closed the socket"
                    heard.append(json.loads(text))
                    if check(heard[-1]):
                        return heard[-1]

            await until(lambda m: m["type"] == "history")
            ws.write_message(json.dumps({"op": "say", "text": "tell me a long story"}))
            await until(lambda m: m["type"] == "line" and "word2" in m["html"] and m["streaming"])
            ws.write_message(json.dumps({"op": "stop"}))
            began = time.monotonic()
            while (await kernel.arun("run ls --agent tobio")).records()[-1]["status"] != "cancelled":
                assert time.monotonic() - began < 1.0
                await asyncio.sleep(0.02)
            took = time.monotonic() - began
            await until(lambda m: m["type"] == "busy" and not m["busy"])  # the page shows Send again
            ws.close()
            return took, heard

        took, heard = asyncio.run(talk())
        wait_until(lambda: kernel.agents.live["tobio"].current is None, timeout=20)
        assert took < 1.0
        runs = kernel.run("run ls --agent tobio").records()
        assert {r["status"] for r in runs} == {"cancelled"}, runs
        assert [m["busy"] for m in heard if m["type"] == "busy"] == [True, False]
        wait_until(lambda: len(kernel.transport._listeners.get("dm.user.tobio", ())) == 0, timeout=10)  # the page's listener is gone
    finally:
        if server is not None:
            server.stop()
        kernel.close()


def test_a_closed_page_stops_the_reply_it_was_streaming(duckdb_url: str, tmp_path: Path) -> None:
    """The page goes away mid-reply (tab closed, network gone): the agent's run is cancelled, not left to
    run on for no one."""
    import asyncio
    import json

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    kernel = storyteller(duckdb_url, tmp_path, modules=("web",))
    server = None
    try:
        server = serve(kernel, "127.0.0.1", free_port(), default_agent="tobio")
        url = server.url.replace("http", "ws", 1) + "ws"

        async def talk() -> None:
            ws = await websocket_connect(HTTPRequest(url, headers={"Origin": server.url.rstrip("/")}))
            ws.write_message(json.dumps({"op": "say", "text": "tell me a long story"}))
            deadline = time.monotonic() + 30
            while True:
                assert time.monotonic() < deadline
                text = await ws.read_message()
                assert text is not None
                if "word2" in text:
                    break
            ws.close()

        asyncio.run(talk())
        wait_until(lambda: kernel.run("run ls --agent tobio").records()[-1]["status"] == "cancelled", timeout=10)
        wait_until(lambda: kernel.agents.live["tobio"].current is None, timeout=20)
    finally:
        if server is not None:
            server.stop()
        kernel.close()


def test_a_line_sent_while_the_page_opens_is_said_after_the_conversation_so_far(duckdb_url: str, tmp_path: Path) -> None:
    """Typed before the conversation so far is shown (a quick person, a slow database): the line is said
    to the agent the page opened on, and shown after that conversation, not wiped or stopped by it. The
    page's session as the websocket drives it, with the request handled before the page's opening began."""
    import asyncio

    from tobio.web.session import PageSession

    kernel = Kernel(KernelConfig(modules=["scripted"]), database=duckdb_url).start()
    try:
        kernel.run(f"agent spawn {write(tmp_path / 'echo.yaml', chr(10).join(['name: echo', 'type: scripted', 'replies: [ok]']))}")

        async def race() -> list[dict[str, Any]]:
            heard: list[dict[str, Any]] = []
            session = PageSession(kernel, heard.append)
            session.handle({"op": "say", "text": "quick hello"})  # on the socket before the opening's first step
            session.spawn(session.start(), after_start=False)
            deadline = time.monotonic() + 30
            while not any(m["type"] == "line" and m["who"] == "echo" and not m["streaming"] for m in heard):
                assert time.monotonic() < deadline, heard
                await asyncio.sleep(0.02)
            session.close()
            return heard

        heard = asyncio.run(race())
        types = [m["type"] for m in heard]
        assert types.index("history") < types.index("line"), types
        assert [m["who"] for m in heard if m["type"] == "line"][:2] == ["You", "echo"]
        assert not [m for m in heard if m["type"] == "notice"], heard
        kernel.call(kernel.writer.flush())
        said = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.user.echo' ORDER BY id").rows
        assert said == [("quick hello",), ("ok",)]
    finally:
        kernel.close()



def test_the_swipe_buttons_stay_off_while_a_turn_streams(duckdb_url: str) -> None:
    """A line typed while the page opened is still being answered when the opening shows the alternatives:
    the buttons must come back off (busy), or "↻ another reply" is offered mid-turn and the server refuses
    it ("the agent is still answering"); the turn's own last word, from inside it, turns them on."""
    import asyncio

    from tobio.web.session import PageSession

    kernel = Kernel(KernelConfig(modules=["scripted"]), database=duckdb_url).start()
    try:
        async def scenario() -> tuple[bool, bool]:
            heard: list[dict[str, Any]] = []
            session = PageSession(kernel, heard.append)
            session.agent, session.last_reply = "echo", "m1"
            release = asyncio.Event()

            async def turn() -> None:
                await release.wait()
                await session.show_alternatives()  # what say() does last

            session.turn = asyncio.create_task(turn())
            await asyncio.sleep(0)
            await session.show_alternatives()  # what the opening does, mid-turn
            during = heard[-1]["busy"]
            release.set()
            await session.turn
            return during, heard[-1]["busy"]

        assert asyncio.run(scenario()) == (True, False)
    finally:
        kernel.close()
