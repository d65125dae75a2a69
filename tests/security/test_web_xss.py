"""An agent's reply is model-written text: on the page it must not run script (real headless Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import PAGE_TIMEOUT, browser, say, wait, wait_text
from test_web import free_port

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.web.serve import serve

from conftest import write

pytestmark = pytest.mark.slow  # a real headless Chromium

ATTACKS = ['<img src=x onerror="window.__pwned=(window.__pwned||0)+1">',
           '<svg><svg onload="window.__pwned=(window.__pwned||0)+1"></svg></svg>',
           '[click](javascript:window.__pwned=1)']


def test_html_in_messages_is_shown_not_run(duckdb_url: str, tmp_path: Path) -> None:
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
        with browser() as page:
            page.get(server.url)
            wait_text(page, "echo says: earlier", PAGE_TIMEOUT)
            say(page, f"now {' '.join(ATTACKS)} done")
            wait_text(page, "echo says: now", 30)
            # every image in the chat has loaded or failed: an injected onerror/onload would have run
            wait(page, lambda: page.execute_script("return [...document.images].every((i) => i.complete)"), 10)
            assert page.execute_script("return window.__pwned") is None
            # not only blocked by the page's CSP: the markup itself carries no handler (safe.py cleaned it)
            handlers = "return [...document.querySelectorAll('#chat *')].flatMap(e => [...e.attributes].map(a => a.name))"
            names = page.execute_script(handlers)
            assert names and not [n for n in names if n.startswith("on") or n in ("src", "style")], names
            assert page.execute_script("return document.querySelectorAll(\"a[href^='javascript']\").length") == 0
    finally:
        if server is not None:
            server.stop()
        kernel.close()
