"""Web authentication as an attacker would try it, in the real headless Chromium and with raw HTTP.

The page with `--token`: no cookie, no page; a wrong token, no cookie; the right one, a chat. The
websocket needs the cookie and an allowed Origin; the login form an XSRF token; every request needs an
allowed Host (DNS rebinding).
The cookie secret is made once, 0600, and survives a restart; the token is never printed or logged.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from browser import ENTER, PAGE_TIMEOUT, Page, browser, goto, say, wait, wait_element, wait_text
from test_web import free_port

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel
from tobio.paths import data_dir
from tobio.web.secret import SECRET_FILE
from tobio.web.serve import WebServer, serve

from conftest import write

pytestmark = pytest.mark.slow

TOKEN = "correct-horse-battery-staple-7f3a"
WRONG = "correct-horse-battery-staple-0000"
ECHO = "name: echo\ntype: scripted\nreplies: ['echo says: {text}']\n"
# Run in the page (execute_async_script: the last argument is the callback).
WS_PROBE = """const [url, done] = arguments;
const ws = new WebSocket(url);
ws.onopen = () => { ws.close(); done("open"); };
ws.onerror = () => done("refused");
setTimeout(() => done("timeout"), 8000);"""
SERVED_PROBE = """const [url, done] = arguments;
const ws = new WebSocket(url);
ws.onmessage = (event) => { ws.close(); done(JSON.parse(event.data).type); };
ws.onclose = () => done("closed");
setTimeout(() => done("timeout"), 8000);"""


# -- raw HTTP: what a script (not a browser) can send -------------------------------------------------

def fetch(port: int, method: str, path: str, *, host: str | None = None, headers: dict[str, str] | None = None,
          body: str | None = None) -> tuple[int, dict[str, list[str]], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        shown = f"127.0.0.1:{port}" if host is None else host
        conn.request(method, path, body=body, headers={"Host": shown, **(headers or {})})
        resp = conn.getresponse()
        found: dict[str, list[str]] = {}
        for key, value in resp.getheaders():
            found.setdefault(key.lower(), []).append(value)
        text = "" if resp.status == 101 else resp.read().decode("utf-8", "replace")
        return resp.status, found, text
    finally:
        conn.close()


def cookies_of(headers: dict[str, list[str]]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for line in headers.get("set-cookie", []):
        jar.load(line)
    return {k: m.value for k, m in jar.items() if m.value}


def xsrf(port: int) -> str:
    """The XSRF cookie the login page sets (its form posts the same value back)."""
    status, headers, _ = fetch(port, "GET", "/login")
    assert status == 200, status
    return cookies_of(headers)["_xsrf"]


def post_login(port: int, password: str, *, check: str | None = None) -> tuple[int, dict[str, list[str]]]:
    """POST the login form as the page does: the XSRF cookie and the same value in the form."""
    check = xsrf(port) if check is None else check
    status, headers, _ = fetch(port, "POST", "/login",
                               body=urlencode({"username": "me", "password": password, "_xsrf": check}),
                               headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"_xsrf={check}"})
    return status, headers


def login(port: int, password: str) -> str:
    """Log in; the Cookie header it earns ('' when refused)."""
    status, headers = post_login(port, password)
    assert status == 302, status
    return "; ".join(f"{k}={v}" for k, v in cookies_of(headers).items() if k == "tobio_login")


def ws_status(port: int, *, cookie: str = "", origin: str | None = None) -> int:
    """The status of a websocket handshake on /ws: 101 when accepted."""
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
               "Origin": origin or f"http://127.0.0.1:{port}"}
    if cookie:
        headers["Cookie"] = cookie
    return fetch(port, "GET", "/ws", headers=headers)[0]


@contextmanager
def other_site(html: str) -> Iterator[str]:
    """Another web server on this machine (a real one: Chromium treats a faked page as a public site)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(name="kernel")
def echo_kernel(duckdb_url: str, tmp_path: Path) -> Iterator[Kernel]:
    """A kernel with one scripted echo agent (test_web_hardening.py uses it too)."""
    k = Kernel(KernelConfig(modules=["scripted"]), database=duckdb_url).start()
    try:
        k.run(f"agent spawn {write(tmp_path / 'echo.yaml', ECHO)}")
        yield k
    finally:
        k.close()


@pytest.fixture
def guarded(kernel: Kernel) -> Iterator[tuple[WebServer, int]]:
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, TOKEN)
    try:
        yield server, port
    finally:
        server.stop()


@pytest.fixture
def driver() -> Iterator[Page]:
    """A fresh headless Chromium per test (no cookies from another test)."""
    # evil.example resolves to this machine, as an attacker's DNS would make it (DNS rebinding)
    with browser("--host-resolver-rules=MAP evil.example 127.0.0.1") as d:
        yield d


def textareas(driver: Page) -> int:
    return len(driver.find_elements("textarea"))


def login_cookies(driver: Page) -> list[dict[str, Any]]:
    return [c for c in driver.get_cookies() if c["name"] == "tobio_login"]


# -- tests ----------------------------------------------------------------------------------------------

def test_without_a_cookie_the_page_redirects_to_the_login(guarded: tuple[WebServer, int], driver: Page) -> None:
    server, port = guarded
    status, headers, _ = fetch(port, "GET", "/")
    assert status == 302 and "login" in headers["location"][0]
    driver.get(server.url)
    assert "/login" in driver.current_url
    wait_element(driver, "input[type=password]", PAGE_TIMEOUT)
    assert textareas(driver) == 0  # no chat box before logging in


def log_in_on_the_page(driver: Page, token: str) -> None:
    """Fill the login form as a person does, and send it with Enter."""
    wait_element(driver, "input[name=username]", PAGE_TIMEOUT).send_keys("me")
    wait_element(driver, "input[type=password]").send_keys(token, ENTER)


def test_wrong_token_fails_and_right_token_logs_in_and_chats(guarded: tuple[WebServer, int], driver: Page,
                                                            kernel: Kernel) -> None:
    server, port = guarded
    assert login(port, WRONG) == ""  # no cookie for a wrong token
    driver.get(server.url)
    log_in_on_the_page(driver, WRONG)
    wait(driver, lambda: "error=" in driver.current_url, PAGE_TIMEOUT, "no error after a wrong token")
    assert not login_cookies(driver)
    driver.get(server.url)
    assert "/login" in driver.current_url  # still locked out
    log_in_on_the_page(driver, TOKEN)
    wait_element(driver, "textarea", PAGE_TIMEOUT)
    cookie = login_cookies(driver)
    assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Strict" and TOKEN not in cookie[0]["value"]
    say(driver, "hello past the login")
    wait_text(driver, "echo says: hello past the login", 30)


class Captured(logging.Handler):
    """What the web server logs (its loggers may not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_websocket_needs_the_cookie_and_an_allowed_origin(guarded: tuple[WebServer, int], driver: Page) -> None:
    server, port = guarded
    cookie = login(port, TOKEN)
    assert cookie.startswith("tobio_login=")
    ws = f"ws://127.0.0.1:{port}/ws"
    # raw: with and without the cookie, from our page and from another site
    assert ws_status(port, cookie=cookie) == 101  # the control: all present, accepted
    assert ws_status(port) == 403  # no cookie
    assert ws_status(port, cookie="tobio_login=forged") == 403  # a cookie not signed with our secret
    assert ws_status(port, cookie=cookie, origin="http://evil.example") == 403
    assert ws_status(port, cookie=cookie, origin=f"http://evil.example:{port}") == 403

    # in Chromium: from our own login page while logged out, the websocket is refused ...
    driver.get(f"{server.url}login")
    assert driver.execute_async_script(WS_PROBE, ws) == "refused"
    # ... and a page on another site is refused even while the browser holds the login cookie (as set by
    # the login: HttpOnly, SameSite=Strict)
    name, value = cookie.split("=", 1)
    driver.add_cookie({"name": name, "value": value, "path": "/", "httpOnly": True, "sameSite": "Strict"})
    assert driver.execute_async_script(WS_PROBE, ws) == "open"  # the control
    assert driver.execute_async_script(SERVED_PROBE, ws) == "agents"  # and the page's session answers on it
    html = "<html><body>not the chat</body></html>"
    said = Captured()
    logging.getLogger("tobio.web").addHandler(said)
    with other_site(html) as other:
        try:
            # another site's page (evil.example, served from this machine): Chromium does not even send
            # the cookie (SameSite), and the server refuses
            driver.get(other.replace("127.0.0.1", "evil.example"))
            wait_text(driver, "not the chat")
            assert driver.execute_async_script(WS_PROBE, ws) == "refused"
            # another port on this machine is the same site, so the cookie goes along: only the Origin
            # check stops it
            driver.get(other)
            wait_text(driver, "not the chat")
            assert driver.execute_async_script(WS_PROBE, ws) == "refused"
        finally:
            logging.getLogger("tobio.web").removeHandler(said)
    assert any(f"Origin '{other.rstrip('/')}'" in line for line in said.lines)  # refused for its Origin


def test_the_login_form_needs_its_xsrf_token(guarded: tuple[WebServer, int]) -> None:
    """Another site cannot post the login form (login CSRF): without the XSRF cookie and field, a 403."""
    _, port = guarded
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = urlencode({"username": "me", "password": TOKEN})
    status, headers, _ = fetch(port, "POST", "/login", body=body, headers=form)
    assert status == 403 and not cookies_of(headers).get("tobio_login")
    check = xsrf(port)
    status, headers, _ = fetch(port, "POST", "/login", body=body, headers={**form, "Cookie": f"_xsrf={check}"})
    assert status == 403 and not cookies_of(headers).get("tobio_login")  # the cookie alone is not enough
    status, headers = post_login(port, TOKEN, check=check)
    assert status == 302 and cookies_of(headers).get("tobio_login")  # the control: cookie and field


def test_a_foreign_host_header_is_refused(guarded: tuple[WebServer, int], kernel: Kernel, driver: Page) -> None:
    server, port = guarded
    assert fetch(port, "GET", "/", host="evil.example")[0] == 403
    assert fetch(port, "GET", "/login", host=f"evil.example:{port}")[0] == 403
    assert fetch(port, "POST", "/login", host=f"evil.example:{port}", body="password=x")[0] == 403
    assert fetch(port, "GET", "/", host="")[0] in (400, 403)
    assert fetch(port, "GET", "/", host=f"localhost:{port}")[0] == 302  # the control: a loopback name
    # DNS rebinding against a page with no token: evil.example resolves to 127.0.0.1 in this browser
    open_port = free_port()
    open_server = serve(kernel, "127.0.0.1", open_port, allow_hosts=["chat.example"])
    try:
        assert goto(driver, f"http://evil.example:{open_port}/") == 403
        assert textareas(driver) == 0
        assert goto(driver, f"http://localhost:{open_port}/") == 200
        wait_element(driver, "textarea", PAGE_TIMEOUT)  # the control: same page, loopback name
        assert fetch(open_port, "GET", "/", host=f"chat.example:{open_port}")[0] == 200  # --allow-host
    finally:
        open_server.stop()


def test_cookie_secret_is_made_once_0600_and_survives_a_restart(kernel: Kernel) -> None:
    path = data_dir() / SECRET_FILE
    assert not path.exists()
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, TOKEN)
    try:
        cookie = login(port, TOKEN)
    finally:
        server.stop()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text()
    assert len(secret.strip()) >= 32 and TOKEN not in secret
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, TOKEN)  # a restart: same secret, so the login still holds
    try:
        assert path.read_text() == secret
        assert fetch(port, "GET", "/", headers={"Cookie": cookie})[0] == 200
    finally:
        server.stop()
    path.chmod(0o644)  # someone loosened it: the secret may have leaked, so a new one is made
    port = free_port()
    server = serve(kernel, "127.0.0.1", port, TOKEN)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() != secret
        assert fetch(port, "GET", "/", headers={"Cookie": cookie})[0] == 302  # old cookies no longer count
    finally:
        server.stop()


def test_the_token_is_never_printed_or_logged(tmp_path: Path) -> None:
    """`tobio web` at DEBUG: logins right and wrong, a page, a websocket, Ctrl-C; the token shows nowhere."""
    config = write(tmp_path / "kernel.yaml", "modules: [scripted, web]\nlog_level: DEBUG\nagents: [echo.yaml]\n")
    write(tmp_path / "echo.yaml", ECHO)
    database = tmp_path / "web.duckdb"
    port = free_port()
    env = {**os.environ, "TOBIO_DATA_DIR": str(data_dir()), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tobio.web.cli", "web", "--config", str(config), "--database",
           f"duckdb:///{database}", "--port", str(port), "--token", TOKEN]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while fetch_or_none(port) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tobio web did not start: {proc.communicate(timeout=10)[1][-2000:]}")
            time.sleep(0.2)
        assert login(port, WRONG) == ""
        cookie = login(port, TOKEN)
        assert cookie
        assert ws_status(port, cookie=cookie) == 101
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "serving Tobio on http://127.0.0.1" in err
    assert TOKEN not in out and TOKEN not in err
    kernel = Kernel(KernelConfig(modules=["scripted"]), database=f"duckdb:///{database}").start()
    try:
        logs = kernel.run("sql SELECT content FROM logs").rows
    finally:
        kernel.close()
    assert logs and not [row for row in logs if TOKEN in str(row[0])]
    for path in [database, *data_dir().rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def fetch_or_none(port: int) -> int | None:
    try:
        return fetch(port, "GET", "/login")[0]
    except OSError:
        return None
