"""An agent's reply is model-written text: on the page it must not run script (real headless Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_web import PAGE_TIMEOUT_MS, browser_or_skip, free_port, launch

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.web.serve import serve

from conftest import write

pytestmark = pytest.mark.slow  # a real headless Chromium

ATTACKS = ['<img src=x onerror="window.__pwned=(window.__pwned||0)+1">',
           '<svg><svg onload="window.__pwned=(window.__pwned||0)+1"></svg></svg>',
           '[click](javascript:window.__pwned=1)']


def test_html_in_messages_is_shown_not_run(duckdb_url: str, tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    kernel = Kernel(KernelConfig(modules=["scripted"]), database=duckdb_url).start()
    server = None
    try:
        agent = "name: echo\ntype: scripted\nreplies: ['echo says: {text}']\n"
        kernel.run(f"agent spawn {write(tmp_path / 'echo.yaml', agent)}")

        async def earlier() -> None:  # a hostile line already in the conversation when the page opens
            me, channel = await kernel.agents.open_dm("user", "echo")
            await me.say(channel, f"earlier {ATTACKS[0]}", role="user")

        kernel.call(earlier())
        server = serve(kernel, "127.0.0.1", free_port())
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page()
            page.goto(server.url, timeout=PAGE_TIMEOUT_MS)
            page.get_by_text("echo says: earlier").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            box = page.locator("textarea").first
            box.fill(f"now {' '.join(ATTACKS)} done")
            box.press("Enter")
            page.get_by_text("echo says: now").first.wait_for(timeout=30_000)
            page.wait_for_timeout(500)  # let any injected handler fire
            assert page.evaluate("window.__pwned") is None
            # not only blocked by the page's CSP: the markup itself carries no handler (safe.py cleaned it)
            handlers = "[...document.querySelectorAll('#chat *')].flatMap(e => [...e.attributes].map(a => a.name))"
            names = page.evaluate(handlers)
            assert names and not [n for n in names if n.startswith("on") or n in ("src", "style")], names
            links = page.locator("a[href^='javascript']")
            assert links.count() == 0
            browser.close()
    finally:
        if server is not None:
            server.stop()
        kernel.close()
