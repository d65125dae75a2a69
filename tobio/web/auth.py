"""The page's password: one token, a login form, and a signed cookie bound to the token.

- the token is held by one `TokenAuth` and compared in constant time;
- a right token earns the `tobio_login` cookie: an HMAC of the token (never the token itself), signed with
  the data dir's secret (`tobio.web.secret`), so a forged cookie fails the signature and a new token logs
  everyone out (its HMAC differs);
- cookies are `SameSite=Strict`, `HttpOnly`, and `Secure` when the page is served over TLS;
- wrong tokens are throttled per client address (`LoginThrottle`);
- the login form carries tornado's XSRF token (`xsrf_cookies`), so another site cannot post to it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from tornado.web import RequestHandler

from tobio.web.throttle import LoginThrottle

log = logging.getLogger(__name__)

BINDING_COOKIE = "tobio_login"
EXPIRY_DAYS = 7  # a login lasts a week (or until the token changes)


def token_binding(token: str) -> str:
    """What the login cookie carries of the token: an HMAC (the cookie never holds the token itself)."""
    return hmac.new(token.encode("utf-8"), b"tobio web login cookie v1", hashlib.sha256).hexdigest()


def cookie_options(handler: RequestHandler) -> dict[str, Any]:
    """SameSite=Strict and HttpOnly always; Secure when this request came over TLS."""
    options: dict[str, Any] = {"samesite": "Strict", "httponly": True}
    if handler.request.protocol == "https":
        options["secure"] = True
    return options


class TokenAuth:
    """The one token a server accepts; only this object holds it."""

    def __init__(self, token: str, throttle: LoginThrottle | None = None) -> None:
        self._expected = token.encode("utf-8")
        self._binding = token_binding(token).encode("ascii")
        self.throttle = throttle or LoginThrottle()

    def __repr__(self) -> str:  # never show the token, even in a debugger or a log of locals
        return "TokenAuth(token=***)"

    def right(self, password: str) -> bool:
        return hmac.compare_digest(password.encode("utf-8"), self._expected)

    def logged_in(self, handler: RequestHandler) -> bool:
        """The request carries our signed login cookie, made for this token."""
        found = handler.get_signed_cookie(BINDING_COOKIE, max_age_days=EXPIRY_DAYS)
        return found is not None and hmac.compare_digest(found, self._binding)

    def log_in(self, handler: RequestHandler) -> None:
        handler.set_signed_cookie(BINDING_COOKIE, self._binding.decode("ascii"), expires_days=EXPIRY_DAYS,
                                  path="/", **cookie_options(handler))
