"""The web page's tornado application: the page, its login, its static files and its websocket.

Everything the page uses is served from this package (tobio/web/static): no CDN, no other host, and a
Content-Security-Policy that lets the browser load nothing from anywhere else. Every request must name an
allowed host (`tobio.web.hosts`); with a token, every page and the websocket need the login cookie
(`tobio.web.auth`); the websocket must come from an allowed Origin; the login form carries an XSRF token.
All the person does on the page (say, stop, swipe, correct) goes over the websocket to a `PageSession`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tornado.web import Application, HTTPError, RequestHandler, StaticFileHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from tobio.web.auth import TokenAuth
from tobio.web.hosts import ANY, guard_hosts
from tobio.web.session import PageSession

if TYPE_CHECKING:
    from tobio.kernel import Kernel

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024  # bytes of any request body (the login form is all that is posted)
MAX_WS_MESSAGE = 256 * 1024  # bytes of one websocket message from the page
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class _Guarded(RequestHandler):
    """Headers every answer carries: nothing loads from elsewhere, no framing, no sniffing, no referrer."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")

    @property
    def auth(self) -> TokenAuth | None:
        auth: TokenAuth | None = self.settings["tobio_auth"]
        return auth

    def allowed(self) -> bool:
        return self.auth is None or self.auth.logged_in(self)


class PageHandler(_Guarded):
    def get(self) -> None:
        if not self.allowed():
            self.redirect("/login")
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish((STATIC / "index.html").read_bytes())


class LoginHandler(_Guarded):
    """The login form (GET) and its check (POST), behind the throttle."""

    def get(self) -> None:
        if self.auth is None:
            self.redirect("/")
            return
        self.render("login.html", failed=bool(self.get_argument("error", "")))

    def post(self) -> None:
        auth = self.auth
        if auth is None:
            raise HTTPError(404)
        client = self.request.remote_ip or "?"
        wait = auth.throttle.wait(client)
        if wait > 0:  # a client that keeps guessing waits longer each time; its tries are not even checked
            self.set_status(429)
            self.set_header("Retry-After", str(max(1, round(wait))))
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"429: too many wrong tokens from {client}; try again in {wait:.0f} s\n")
            return
        if auth.right(self.get_body_argument("password", "")[:1024]):
            auth.throttle.succeeded(client)
            auth.log_in(self)
            self.redirect("/")
        else:
            auth.throttle.failed(client)
            log.warning("web: a wrong token from %s", client)
            self.redirect("/login?error=1")


class Static(StaticFileHandler, _Guarded):
    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


class ChatSocket(WebSocketHandler):
    """The page's websocket: the login cookie (with a token) and an allowed Origin, else no handshake."""

    session: PageSession | None = None

    def prepare(self) -> None:
        auth: TokenAuth | None = self.settings["tobio_auth"]
        if auth is not None and not auth.logged_in(self):
            raise HTTPError(403, "not logged in")

    def check_origin(self, origin: str) -> bool:
        origins: set[str] = self.settings["tobio_origins"]
        netloc = urlsplit(origin).netloc.lower()
        if ANY in origins or netloc in origins:
            return True
        log.warning("web: refused a websocket from Origin %r (not allowed; see --allow-origin)", origin[:120])
        return False

    def open(self, *args: str, **kwargs: str) -> None:
        self.session = PageSession(self.settings["tobio_kernel"], self.send, self.settings["tobio_default_agent"])
        self.session.spawn(self.session.start(), after_start=False)

    def on_message(self, message: str | bytes) -> None:
        try:
            request = json.loads(message)
        except ValueError:
            request = None
        if self.session is None or not isinstance(request, dict):
            self.send({"type": "notice", "text": "the page sent something that is not a request"})
            return
        self.session.handle(request)

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.write_message(json.dumps(message))
        except WebSocketClosedError:
            pass  # the page went away; on_close stops what it started

    def on_close(self) -> None:
        if self.session is not None:
            self.session.close()


def make_app(kernel: Kernel, auth: TokenAuth | None, secret: str, hosts: set[str], origins: list[str],
             default_agent: str | None = None, tls: bool = False) -> Application:
    """The routes, with the Host check ahead of all of them."""
    xsrf = {"samesite": "Strict", "httponly": True, **({"secure": True} if tls else {})}
    app = Application([
        (r"/", PageHandler),
        (r"/login", LoginHandler),
        (r"/ws", ChatSocket),
        (r"/static/(.*)", Static, {"path": str(STATIC)}),
    ], cookie_secret=secret, xsrf_cookies=True, xsrf_cookie_kwargs=xsrf, template_path=str(STATIC),
        websocket_max_message_size=MAX_WS_MESSAGE, websocket_ping_interval=30, compress_response=False,
        tobio_kernel=kernel, tobio_auth=auth, tobio_origins=set(origins), tobio_default_agent=default_agent)
    guard_hosts(app, hosts)
    return app

