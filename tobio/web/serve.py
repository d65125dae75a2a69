"""Serving the web app: on 127.0.0.1 by default; any other address needs a token (HTTP basic auth)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from tobio.errors import TobioError

if TYPE_CHECKING:
    from tobio.kernel import Kernel


def is_loopback(address: str) -> bool:
    if address in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def serve(kernel: Kernel, address: str = "127.0.0.1", port: int = 5006, token: str | None = None,
          threaded: bool = True) -> Any:
    """Start the Panel server; returns it (a thread with `.stop()` when threaded)."""
    if not is_loopback(address) and not token:
        raise TobioError(
            f"serving on {address} needs --token: anyone who can reach it could talk as you and read every "
            f"conversation (or serve on 127.0.0.1)"
        )
    import panel as pn

    from tobio.web.app import create_app

    origins = [f"{host}:{port}" for host in ("127.0.0.1", "localhost", address)]
    return pn.serve({"/": lambda: create_app(kernel)}, address=address, port=port, show=False, threaded=threaded,
                    websocket_origin=origins, basic_auth=token or None, title="Tobio", start=True)
