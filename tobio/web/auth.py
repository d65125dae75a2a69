"""The page's password: Panel's basic-auth login page and signed cookie, checked against one token.

Panel's own `basic_auth=` check reads the password from process-wide state, treats a password that
happens to be a file path as a credentials file, and compares with `==`. This provider keeps
Panel's login page, `user` cookie (signed with `cookie_secret`) and websocket check, and adds:
- the token bound to one server and compared in constant time;
- a login cookie bound to the token: next to `user` it sets `tobio_login`, an HMAC of the token, and
  every request (page or websocket) checks it, so a new token logs everyone out;
- cookies `SameSite=Strict`, `HttpOnly`, and `Secure` when the page is served over TLS;
- throttling of wrong tokens per client address (`LoginThrottle`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any, cast

from panel.auth import BasicAuthProvider, BasicLoginHandler
from panel.config import config

from tobio.web.throttle import LoginThrottle

log = logging.getLogger(__name__)

BINDING_COOKIE = "tobio_login"


def token_binding(token: str) -> str:
    """What the login cookie carries of the token: an HMAC (the cookie never holds the token itself)."""
    return hmac.new(token.encode("utf-8"), b"tobio web login cookie v1", hashlib.sha256).hexdigest()


def _cookie_options(handler: Any, options: dict[str, Any]) -> dict[str, Any]:
    """SameSite=Strict always; Secure when this request came over TLS."""
    options.setdefault("samesite", "Strict")
    if handler.request.protocol == "https":
        options.setdefault("secure", True)
    return options


class TokenAuthProvider(BasicAuthProvider):
    """Any user name, the one token as password; the token lives only in this object's handler class."""

    def __init__(self, token: str, throttle: LoginThrottle | None = None) -> None:
        expected = token.encode("utf-8")
        binding = token_binding(token)
        self.throttle = throttle or LoginThrottle()
        gate = self.throttle

        def validate(handler: Any, username: str, password: str) -> bool:
            return hmac.compare_digest(password.encode("utf-8"), expected)

        def set_cookie(handler: Any, name: str, value: str | bytes, *args: Any, **options: Any) -> None:
            BasicLoginHandler.set_cookie(handler, name, value, *args, **_cookie_options(handler, options))

        def set_current_user(handler: Any, user: str) -> None:  # Panel logs no one in with an empty name
            BasicLoginHandler.set_current_user(handler, user or "user")
            handler.set_secure_cookie(BINDING_COOKIE, binding, expires_days=config.oauth_expiry, httponly=True,
                                      path=config.cookie_path)

        def post(handler: Any) -> None:
            """Panel's login, behind the throttle: a client that keeps guessing waits longer each time."""
            client = handler.request.remote_ip or "?"
            wait = gate.wait(client)
            if wait > 0:
                handler.set_status(429)
                handler.set_header("Retry-After", str(max(1, round(wait))))
                handler.set_header("Content-Type", "text/plain; charset=utf-8")
                handler.finish(f"429: too many wrong tokens from {client}; try again in {wait:.0f} s\n")
                return
            password = handler.get_argument("password", "")
            if validate(handler, "", password):
                gate.succeeded(client)
            else:
                gate.failed(client)
            BasicLoginHandler.post(handler)

        # a class per server: Panel's provider sets its login settings as class attributes
        self._handler = cast("type[BasicLoginHandler]", type("TokenLoginHandler", (BasicLoginHandler,), {
            "_validate": validate, "set_current_user": set_current_user, "set_cookie": set_cookie, "post": post}))
        self._binding = binding
        # after: Bokeh's provider checks login_handler while it initialises
        super().__init__()  # type: ignore[no-untyped-call]  # Panel's BasicAuthProvider.__init__ is unannotated

    def __repr__(self) -> str:  # never show the token, even in a debugger or a log of locals
        return "TokenAuthProvider(token=***)"

    @property
    def login_handler(self) -> type[BasicLoginHandler]:
        self._handler._login_endpoint = self._login_endpoint
        self._handler._login_template = self._login_template
        return self._handler

    @property
    def get_user(self) -> Any:
        """Panel's check of the signed `user` cookie, and the token binding next to it, on every request."""
        panel_get_user = super().get_user
        binding = self._binding.encode("ascii")

        def get_user(handler: Any) -> Any:
            found = handler.get_secure_cookie(BINDING_COOKIE, max_age_days=config.oauth_expiry)
            if not found or not hmac.compare_digest(found, binding):
                return None  # logged in under another token (or never): back to the login page
            return panel_get_user(handler)

        return get_user
