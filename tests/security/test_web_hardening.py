"""The web page against a stranger, with a real server: throttled guessing, cookies bound to the token,
SameSite/Secure cookies (over real TLS too), any Host header answered without a 500, and chat text
that cannot make the browser fetch anything from another host."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from test_web import free_port
from test_web_auth import TOKEN, WRONG, cookies_of, echo_kernel, fetch, login, post_login, xsrf  # noqa: F401 (echo_kernel is the `kernel` fixture)

from tobio.kernel import Kernel
from tobio.web.safe import clean, render
from tobio.web.serve import WebServer, serve
from tobio.web.throttle import FREE_TRIES, LoginThrottle

NEW_TOKEN = "a-brand-new-token-after-rotation-42"


@pytest.fixture(params=[TOKEN, None], ids=["token", "open"])
def guarded(kernel: Kernel, request: pytest.FixtureRequest) -> Iterator[tuple[WebServer, int]]:
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, request.param)
    try:
        yield server, port
    finally:
        server.stop()


def test_guessing_tokens_is_throttled(kernel: Kernel) -> None:
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, TOKEN)
    try:
        throttled(port)
    finally:
        server.stop()


def throttled(port: int) -> None:
    started = time.monotonic()
    check = xsrf(port)  # a guesser that does everything right but the token
    statuses = [post_login(port, f"{WRONG}{i}", check=check)[0] for i in range(300)]
    assert statuses.count(429) >= 290, statuses[:20]  # all but the first few are refused unchecked
    assert set(statuses) <= {302, 429}
    assert post_login(port, TOKEN, check=check)[0] == 429  # even the right token waits: no free guesses while throttled
    assert time.monotonic() - started < 60


def test_throttle_backs_off_exponentially_and_forgets_on_success() -> None:
    now = [1000.0]
    gate = LoginThrottle(clock=lambda: now[0])
    for _ in range(FREE_TRIES - 1):
        gate.failed("1.2.3.4")
        assert gate.wait("1.2.3.4") == 0
    waits = []
    for _ in range(6):
        gate.failed("1.2.3.4")
        waits.append(gate.wait("1.2.3.4"))
        now[0] += waits[-1]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert gate.wait("5.6.7.8") == 0  # another client is not held up by this one
    gate.succeeded("1.2.3.4")
    assert gate.wait("1.2.3.4") == 0


def test_cookies_are_samesite_strict_httponly_and_bound_to_the_token(kernel: Kernel) -> None:
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, TOKEN)
    try:
        check = xsrf(port)
        status, headers = post_login(port, TOKEN, check=check)
        assert status == 302
        cookies = headers["set-cookie"]
        assert cookies and all("samesite=strict" in c.lower() and "httponly" in c.lower() for c in cookies), cookies
        assert not any("secure" in c.lower().replace("set-cookie", "") for c in cookies)  # plain http: no Secure
        assert TOKEN not in " ".join(cookies)
        login_page = fetch(port, "GET", "/login")[1]["set-cookie"]  # the XSRF cookie too
        assert login_page and all("samesite=strict" in c.lower() and "httponly" in c.lower() for c in login_page)
        full = login(port, TOKEN)
        assert fetch(port, "GET", "/", headers={"Cookie": full})[0] == 200  # the control
        assert fetch(port, "GET", "/", headers={"Cookie": f"_xsrf={check}"})[0] == 302  # no login cookie
        name, value = full.split("=", 1)
        tampered = f"{name}={value[:-4]}{'0000' if not value.endswith('0000') else '1111'}"
        assert fetch(port, "GET", "/", headers={"Cookie": tampered})[0] == 302  # its signature no longer holds
    finally:
        server.stop()
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, NEW_TOKEN)  # the token rotated: everyone is logged out
    try:
        assert fetch(port, "GET", "/", headers={"Cookie": full})[0] == 302
        status, headers, _ = fetch(port, "GET", "/ws", headers={"Cookie": full, "Upgrade": "websocket"})
        assert status in (302, 400, 403)
        fresh = login(port, NEW_TOKEN)
        assert fresh and fetch(port, "GET", "/", headers={"Cookie": fresh})[0] == 200
    finally:
        server.stop()
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, TOKEN)  # the old token again: its cookies count again
    try:
        assert fetch(port, "GET", "/", headers={"Cookie": full})[0] == 200
    finally:
        server.stop()


def test_over_tls_the_cookies_are_secure(kernel: Kernel, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                           str(cert), "-days", "1", "-subj", "/CN=localhost"], capture_output=True)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, TOKEN, certfile=str(cert), keyfile=str(key))
    try:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
        conn.request("POST", "/login", body=urlencode({"username": "me", "password": TOKEN, "_xsrf": "x" * 32}),
                     headers={"Host": f"localhost:{port}", "Content-Type": "application/x-www-form-urlencoded",
                              "Cookie": "_xsrf=" + "x" * 32})
        response = conn.getresponse()
        cookies = [v for k, v in response.getheaders() if k.lower() == "set-cookie"]
        conn.close()
        assert response.status == 302 and cookies
        assert all("secure" in c.lower() and "samesite=strict" in c.lower() for c in cookies), cookies
    finally:
        server.stop()


@pytest.mark.parametrize("host", ["[::1]", "[::1]:{port}", "[::1]:99999", "[zz::1]", "localhost:abc", "localhost:{port}x",
                                  "a b", "x" * 5000, "localhost:" + "9" * 400, "ｌｏｃａｌｈｏｓｔ", "localhost\t",
                                  "127.0.0.1:{port}", "localhost.", "[::ffff:127.0.0.1]:{port}", "@", ":", "", "..",
                                  "evil.example:{port}", "local_host", "-"])
def test_no_host_header_gives_a_500(guarded: tuple[WebServer, int], host: str) -> None:
    _, port = guarded
    shown = host.replace("{port}", str(port))
    for method, path in (("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("GET", "/ws")):
        status = raw_status(port, method, path, shown)
        assert status is None or status in (200, 302, 400, 403, 404, 429), (shown[:40], method, path, status)
        if shown.startswith("[::1]") and status is not None:
            assert status == 400  # an IPv6 literal: a clear refusal


def raw_status(port: int, method: str, path: str, host: str) -> int | None:
    """The status for a request whose Host header is sent byte for byte (UTF-8 too); None if the
    server closed the connection without an answer (tornado does for headers it cannot parse)."""
    body = b"password=x" if method == "POST" else b""
    request = (f"{method} {path} HTTP/1.1\r\n".encode() + b"Host: " + host.encode("utf-8") + b"\r\n"
               + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\nConnection: close\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        first = conn.recv(64)
    if not first:
        return None
    return int(first.split(b" ")[1])


REMOTE = ["![x](https://evil.example/pixel.png?q=secret)", '<img src="https://evil.example/a?q=1">',
          '<img srcset="https://evil.example/b 2x">', '<span style="background:url(https://evil.example/c)">s</span>',
          '<table background="https://evil.example/d"><tr><td>t</td></tr></table>',
          '<video poster="https://evil.example/e"></video>', '<picture><source srcset="https://evil.example/f"></picture>',
          '<svg><image href="https://evil.example/g"/></svg>', '<link rel="stylesheet" href="https://evil.example/h">',
          '<iframe src="https://evil.example/i"></iframe>', '<object data="https://evil.example/j"></object>',
          '<audio src="https://evil.example/k"></audio>', '<img src="//evil.example/l">', '<img src="/logout">',
          '<a href="https://example.org/?q=ok">a link</a>']


def test_rendered_chat_text_loads_nothing_from_anywhere() -> None:
    for text in REMOTE:
        markup = render(text)
        for attr in ("src=", "srcset=", "background=", "poster=", "style=", "data=", "url("):
            assert attr not in markup, (text, markup)
        assert "evil.example" not in markup or "<a " in markup, (text, markup)
    link = clean('<a href="https://example.org/?q=ok">a link</a>')
    assert 'href="https://example.org/?q=ok"' in link and 'rel="noopener noreferrer"' in link


def test_every_page_forbids_loading_from_elsewhere(guarded: tuple[WebServer, int]) -> None:
    """The Content-Security-Policy: scripts, styles and connections only from the server itself, images
    from it or inline (the mood trace), no inline script, no framing by another site."""
    _, port = guarded
    for path in ("/", "/login", "/static/app.js"):
        status, headers, _ = fetch(port, "GET", path)
        if status == 302:  # / with a token: the login page says the same
            continue
        assert status == 200, (path, status)
        policy = headers["content-security-policy"][0]
        for rule in ("default-src 'none'", "script-src 'self'", "connect-src 'self'", "img-src 'self' data:",
                     "frame-ancestors 'none'", "form-action 'self'"):
            assert rule in policy, (path, policy)
        assert "unsafe" not in policy and "*" not in policy and "http" not in policy
        assert headers["x-frame-options"] == ["DENY"] and headers["x-content-type-options"] == ["nosniff"]


def ws_url(port: int) -> tuple[str, str]:
    return f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}"


def test_the_open_pages_websocket_checks_the_origin_too(kernel: Kernel) -> None:
    """No token: the page needs no login, but a page on another origin still cannot open its websocket
    (it would talk as the person and read every conversation)."""
    from test_web_auth import ws_status

    port = free_port()
    server = serve(kernel, "127.0.0.1", port)
    try:
        assert ws_status(port) == 101  # the control: our own origin
        assert ws_status(port, origin=f"http://localhost:{port}") == 101
        assert ws_status(port, origin="http://evil.example") == 403
        assert ws_status(port, origin=f"http://127.0.0.1:{port + 1}") == 403  # another port: another origin
        assert ws_status(port, origin="null") == 403  # a sandboxed frame or a file: page
    finally:
        server.stop()


def test_requests_are_bounded(kernel: Kernel) -> None:
    """A huge login body is refused unread; a huge websocket message closes the socket; a chat line over
    the page's limit is one clear notice and nothing is said."""
    import asyncio
    import json

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    from tobio.web.session import MAX_SAID

    port = free_port()
    server = serve(kernel, "127.0.0.1", port)
    try:
        try:
            status: int | None = fetch(port, "POST", "/login", body="password=" + "x" * 200_000,
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})[0]
        except (ConnectionError, http.client.HTTPException):
            status = None  # closed without reading it: refused all the same
        assert status in (None, 400, 413), status

        async def talk() -> tuple[Any, list[dict[str, Any]]]:
            url, origin = ws_url(port)
            heard: list[dict[str, Any]] = []
            ws = await websocket_connect(HTTPRequest(url, headers={"Origin": origin}))
            ws.write_message(json.dumps({"op": "say", "text": "x" * (MAX_SAID + 1)}))
            while not any(m["type"] == "notice" for m in heard):
                text = await asyncio.wait_for(ws.read_message(), 30)
                assert text is not None
                heard.append(json.loads(text))
            ws.write_message(json.dumps({"op": "what"}))
            ws.write_message("not json")
            while sum(m["type"] == "notice" for m in heard) < 3:  # the page's opening may still be arriving too
                heard.append(json.loads(await asyncio.wait_for(ws.read_message(), 30)))
            ws.write_message(json.dumps({"op": "say", "text": "y" * 400_000}))  # over the socket's limit
            closed = await asyncio.wait_for(ws.read_message(), 30)
            while closed is not None:
                closed = await asyncio.wait_for(ws.read_message(), 30)
            return ws.close_code, heard

        code, heard = asyncio.run(talk())
        notices = [m["text"] for m in heard if m["type"] == "notice"]
        assert notices[0] == f"that is {MAX_SAID + 1:,} characters; the page sends at most {MAX_SAID:,} at once"
        assert notices[1:] == ["unknown request 'what'", "the page sent something that is not a request"]
        assert code == 1009  # message too big
        kernel.call(kernel.writer.flush())
        assert kernel.run("sql SELECT count(*) FROM messages WHERE channel = 'dm.user.echo'").rows == [(0,)]
    finally:
        server.stop()
