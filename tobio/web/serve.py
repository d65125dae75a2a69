"""Serving the web app: on 127.0.0.1 by default; any other address needs a token (a login page).

Every request must name an allowed host and every websocket come from an allowed origin (see
`tobio.web.hosts`). With a token, the login page sets a cookie signed with a secret kept in the data dir
(`tobio.web.secret`, `tobio.web.auth`); without that cookie the page redirects to the login and the
websocket is refused. The server (tornado, `tobio.web.app`) runs on a thread of its own, so `web serve`
leaves the shell usable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tobio.errors import TobioError
from tobio.web.auth import TokenAuth
from tobio.web.hosts import (
    allowed_hosts,
    allowed_origins,
    check_address,
    check_port,
    is_loopback,
)

if TYPE_CHECKING:
    from tobio.kernel import Kernel

__all__ = ["TOKEN_ENV", "WebServer", "check_token", "is_loopback", "serve"]

log = logging.getLogger(__name__)

TOKEN_ENV = "TOBIO_WEB_TOKEN"  # the token without putting it on a command line (ps, shell history)
MIN_TOKEN = 8


def check_token(token: str | None, address: str) -> str | None:
    """The token (`--token`, else $TOBIO_WEB_TOKEN), refused when too short or missing off loopback."""
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < MIN_TOKEN:  # the message never repeats the token itself
        raise TobioError(f"--token is too short (at least {MIN_TOKEN} characters; "
                         "`python -c 'import secrets; print(secrets.token_urlsafe())'` makes a good one)")
    if not is_loopback(address) and not token:
        raise TobioError(
            f"serving on {address} needs --token (or {TOKEN_ENV}): anyone who can reach it could talk as you "
            f"and read every conversation (or serve on 127.0.0.1)"
        )
    return token


def url_for(address: str, port: int, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    if ":" in address and is_loopback(address):
        address = "localhost"  # the page cannot be opened under an IPv6 literal (see hosts.host_allowed)
    return f"{scheme}://[{address}]:{port}/" if ":" in address else f"{scheme}://{address}:{port}/"


class WebServer(threading.Thread):
    """The tornado server on its own event loop; `stop()` shuts it down from any thread."""

    def __init__(self, build: Callable[[], Any], url: str, auth: bool) -> None:
        super().__init__(name="tobio-web", daemon=True)
        self.url = url
        self.auth = auth  # whether the page asks for the token
        self._build = build
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server: Any = None

    def run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def build() -> Any:  # on the running loop: tornado binds its sockets to it
            return self._build()

        try:
            self.server = loop.run_until_complete(build())
        except BaseException as exc:  # handed to the thread that started us
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def start_serving(self, where: str, timeout: float = 60.0) -> WebServer:
        self.start()
        if not self._ready.wait(timeout):
            raise TobioError(f"the web server on {where} did not start within {timeout:g} s")
        if isinstance(self._error, OSError):
            raise TobioError(f"cannot serve on {where}: {self._error.strerror or self._error}") from None
        if self._error is not None:
            raise TobioError(f"cannot serve on {where}: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop = self._loop
        if loop is None or not self.is_alive():
            return
        try:
            loop.call_soon_threadsafe(self._shutdown)
        except RuntimeError:  # loop already closed
            return
        self.join(timeout)

    def _shutdown(self) -> None:
        try:
            self.server.stop()  # no new connections; the open ones close with the loop
        except Exception as exc:  # stopping must always stop the loop
            log.debug("web: stopping the server: %s", exc)
        finally:
            assert self._loop is not None
            self._loop.stop()


def serve(kernel: Kernel, address: str = "127.0.0.1", port: int = 5006, token: str | None = None, *,
          allow_hosts: Iterable[str] = (), allow_origins: Iterable[str] = (),
          default_agent: str | None = None, certfile: str | None = None, keyfile: str | None = None) -> WebServer:
    """Start the page on a thread of its own; returns it once it listens (or raises one clear TobioError).
    With `certfile` (and `keyfile`, unless the cert file holds the key) it is served over TLS, and the
    login cookies are marked Secure."""
    address = check_address(address)
    if certfile:
        for given in (certfile, keyfile):
            if given and not os.path.isfile(given):
                raise TobioError(f"TLS file {given!r} does not exist")
    elif keyfile:
        raise TobioError("a TLS key needs its certificate (--tls-cert)")
    port = check_port(port)
    token = check_token(token, address)
    hosts = allowed_hosts(address, allow_hosts)
    origins = allowed_origins(hosts, port, allow_origins)
    auth: TokenAuth | None = None
    secret = secrets.token_urlsafe(32)  # no token: no login cookie to sign, so no secret kept
    if token:
        from tobio.web.secret import cookie_secret

        auth, secret = TokenAuth(token), cookie_secret()
    del token  # from here on only `auth` holds it
    ssl_options = None
    if certfile:
        ssl_options = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_options.load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise TobioError(f"cannot use the TLS certificate {certfile!r}: {exc}") from None

    def build() -> Any:
        from tornado.httpserver import HTTPServer

        from tobio.web.app import MAX_BODY, make_app

        app = make_app(kernel, auth, secret, hosts, origins, default_agent, tls=ssl_options is not None)
        server = HTTPServer(app, ssl_options=ssl_options, max_body_size=MAX_BODY, max_header_size=MAX_BODY,
                            xheaders=False)
        server.listen(port, address)
        return server

    where = f"{address}:{port}"
    return WebServer(build, url_for(address, port, ssl_options is not None), auth is not None).start_serving(where)
