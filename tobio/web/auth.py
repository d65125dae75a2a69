"""The page's password: Panel's basic-auth login page and signed cookie, checked against one token.

Panel's own `basic_auth=` check reads the password from process-wide state, treats a password that
happens to be a file path as a credentials file, and compares with `==`. This provider keeps
Panel's login page, `user` cookie (signed with `cookie_secret`) and websocket check, but binds the
token to one server and compares it in constant time.
"""

from __future__ import annotations

import hmac
from typing import Any, cast

from panel.auth import BasicAuthProvider, BasicLoginHandler


class TokenAuthProvider(BasicAuthProvider):
    """Any user name, the one token as password; the token lives only in this object's handler class."""

    def __init__(self, token: str) -> None:
        expected = token.encode("utf-8")

        def validate(handler: Any, username: str, password: str) -> bool:
            return hmac.compare_digest(password.encode("utf-8"), expected)

        def set_current_user(handler: Any, user: str) -> None:  # Panel logs no one in with an empty name
            BasicLoginHandler.set_current_user(handler, user or "user")

        # a class per server: Panel's provider sets its login settings as class attributes
        self._handler = cast("type[BasicLoginHandler]", type("TokenLoginHandler", (BasicLoginHandler,),
                             {"_validate": validate, "set_current_user": set_current_user}))  # a subclass built at run time
        # after: Bokeh's provider checks login_handler while it initialises
        super().__init__()  # type: ignore[no-untyped-call]  # Panel's BasicAuthProvider.__init__ is unannotated

    def __repr__(self) -> str:  # never show the token, even in a debugger or a log of locals
        return "TokenAuthProvider(token=***)"

    @property
    def login_handler(self) -> type[BasicLoginHandler]:
        self._handler._login_endpoint = self._login_endpoint
        self._handler._login_template = self._login_template
        return self._handler
