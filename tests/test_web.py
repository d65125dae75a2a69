"""The web UI end to end in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.errors import TobioError
from tobio.kernel import Kernel
from tobio.web.serve import serve

from conftest import write

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
REPLY = "echo says: {text} and then a few more words to stream"


def _browser_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("TOBIO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TOBIO_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chat_page_streams_a_reply(duckdb_url: str, tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    kernel = Kernel(KernelConfig(modules=["scripted", "emotion"]), database=duckdb_url).start()
    port = free_port()
    server = None
    try:
        agent = f"name: echo\ntype: scripted\nstream: true\ntoken_delay_s: 0.15\nreplies: ['{REPLY}']\n"
        kernel.run(f"agent spawn {write(tmp_path / 'echo.yaml', agent)}")
        server = serve(kernel, "127.0.0.1", port)
        final = REPLY.format(text="hello web")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            box = page.locator("textarea").first
            box.wait_for(timeout=60_000)
            box.fill("hello web")
            box.press("Enter")
            seen_partial = False
            deadline = time.monotonic() + 60
            reply = page.get_by_text("echo says:", exact=False)  # CSS/text locators pierce Bokeh's shadow DOM
            while time.monotonic() < deadline:
                shown = reply.first.inner_text() if reply.count() else ""
                if final in shown:
                    break
                if shown:
                    seen_partial = True  # part of the reply is on the page before the rest
                time.sleep(0.05)
            page.get_by_text(final).first.wait_for(timeout=10_000)
            shot = tmp_path / "web.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        assert seen_partial, "the reply arrived all at once, not streamed"
        assert shot.stat().st_size > 10_000
        kernel.call(kernel.writer.flush())
        stored = kernel.run("sql SELECT content FROM messages WHERE channel = 'dm.web.echo' ORDER BY id").rows
        assert stored == [("hello web",), (final,)]
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
