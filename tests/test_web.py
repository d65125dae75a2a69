"""The web UI end to end in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from storyteller import storyteller

from tobio.config.schema import KernelConfig
from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.web.history import opening_agent
from tobio.web.serve import serve

from conftest import write
from helpers import wait_until

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
REPLY = "echo says: {text} and then a few more words to stream"
PAGE_TIMEOUT_MS = 60_000


def browser_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("TOBIO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TOBIO_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(playwright: Any, *extra_flags: str) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*FLAGS, *extra_flags])


def open_chat(playwright: Any, url: str, say: str) -> tuple[Any, Any]:
    """A browser on the chat page at `url` with `say` sent; returns (browser, page)."""
    browser = launch(playwright)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    box = page.locator("textarea").first
    box.wait_for(timeout=PAGE_TIMEOUT_MS)
    box.fill(say)
    box.press("Enter")
    return browser, page


@pytest.mark.slow
def test_chat_page_streams_a_reply(duckdb_url: str, tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    kernel = Kernel(KernelConfig(modules=["scripted", "emotion"]), database=duckdb_url).start()
    server = None
    try:
        agent = f"name: echo\ntype: scripted\nstream: true\ntoken_delay_s: 0.15\nreplies: ['{REPLY}']\n"
        kernel.run(f"agent spawn {write(tmp_path / 'echo.yaml', agent)}")
        server = serve(kernel, "127.0.0.1", free_port())
        final = REPLY.format(text="hello web")
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            asked: list[str] = []
            page.on("request", lambda request: asked.append(request.url))
            page.goto(server.url, timeout=PAGE_TIMEOUT_MS)
            box = page.locator("textarea").first
            box.fill("hello web")
            box.press("Enter")
            seen_partial = False
            deadline = time.monotonic() + 60
            reply = page.get_by_text("echo says:", exact=False)
            while time.monotonic() < deadline:
                shown = reply.first.inner_text() if reply.count() else ""
                if final in shown:
                    break
                if shown:
                    seen_partial = True  # part of the reply is on the page before the rest
                time.sleep(0.05)
            page.get_by_text(final).first.wait_for(timeout=10_000)
            page.locator("#trace").wait_for(timeout=10_000)  # the sidebar's mood trace (emotion plot)
            shot = tmp_path / "web.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert seen_partial, "the reply arrived all at once, not streamed"
        # everything the page loads comes from the server itself (or is inline data): no CDN, no other host
        assert asked and all(url.startswith((server.url, "data:", server.url.replace("http", "ws", 1))) for url in asked), asked
        assert {f"{server.url}static/app.js", f"{server.url}static/app.css"} <= set(asked)
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
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    kernel = persona_kernel

    async def earlier() -> None:  # what the person said at the shell (`chat tobio`) before opening the page
        me, channel = await kernel.agents.open_dm("user", "tobio")
        await me.say(channel, "do you remember the lighthouse?", role="user")

    kernel.call(earlier())
    wait_until(lambda: kernel.agents.live["tobio"].turns == 1)
    server = serve(kernel, "127.0.0.1", free_port())
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server.url, timeout=PAGE_TIMEOUT_MS)
            page.get_by_text("do you remember the lighthouse?").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            page.get_by_text("the lighthouse keeper remembers").first.wait_for(timeout=10_000)
            assert page.locator("select").first.input_value() == "tobio"
            box = page.locator("textarea").first
            box.fill("and the boat?")
            box.press("Enter")
            wait_until(lambda: kernel.agents.live["tobio"].turns == 2, timeout=30)
            wait_until(lambda: page.get_by_text("the lighthouse keeper remembers").count() == 2, timeout=10)
            # the agent picker: another agent, its own (empty) conversation; back, and ours is there again
            assert sorted(page.locator("select option").all_inner_texts()) == ["echo", "tobio"]
            page.locator("select").first.select_option("echo")
            wait_until(lambda: page.get_by_text("the lighthouse keeper remembers").count() == 0, timeout=10)
            page.locator("select").first.select_option("tobio")
            page.get_by_text("and the boat?").first.wait_for(timeout=10_000)
            assert page.get_by_text("the lighthouse keeper remembers").count() == 2
            browser.close()
        kernel.call(kernel.writer.flush())
        said = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.user.tobio' ORDER BY id").rows
        assert [row[0] for row in said] == ["do you remember the lighthouse?", "the lighthouse keeper remembers",
                                            "and the boat?", "the lighthouse keeper remembers"]
    finally:
        server.stop()


@pytest.mark.slow
def test_the_stop_button_cancels_the_agents_run(duckdb_url: str, tmp_path: Path) -> None:
    """Stop while the persona's reply streams: its model run ends `cancelled` within a second, and the
    turn starts no other run afterwards."""
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    kernel = storyteller(duckdb_url, tmp_path, modules=("web",))
    server = None
    try:
        server = serve(kernel, "127.0.0.1", free_port())
        with sync_playwright() as p:
            browser, page = open_chat(p, server.url, "tell me a long story")
            page.get_by_text("word0 word1 word2", exact=False).first.wait_for(timeout=30_000)  # streaming
            stop = page.get_by_role("button", name="Stop")
            stop.click()
            began = time.monotonic()
            while kernel.run("run ls --agent tobio").records()[-1]["status"] != "cancelled":
                assert time.monotonic() - began < 1.0, kernel.run("run ls --agent tobio").records()
                time.sleep(0.02)
            took = time.monotonic() - began
            wait_until(lambda: kernel.agents.live["tobio"].current is None, timeout=20)
            browser.close()
        runs = kernel.run("run ls --agent tobio").records()
        assert {r["status"] for r in runs} == {"cancelled"}, runs
        assert took < 1.0
        kernel.call(kernel.writer.flush())
        said = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.user.tobio' ORDER BY id").rows
        assert said[0] == ("tell me a long story",) and len(said[-1][0].split()) < 100  # the reply was cut short
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
