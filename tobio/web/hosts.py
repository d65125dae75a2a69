"""Who may address the page: the bind address check and the Host/Origin allow-lists.

A page on 127.0.0.1 is still reachable from any web site the user visits, by DNS rebinding (a name the
attacker controls that resolves to 127.0.0.1): the browser then sends `Host: evil.example`. So every
request must name an allowed host, and every websocket must come from an allowed origin.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from tornado.routing import Matcher, Rule
from tornado.web import RequestHandler

from tobio.errors import TobioError

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::")
ANY = "*"


def _bare(address: str) -> str:
    return address.strip().lower().removeprefix("[").removesuffix("]")


def is_loopback(address: str) -> bool:
    """True only for names that reach this machine alone; "" binds every interface, so it is not."""
    name = _bare(address)
    if not name:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_address(address: str) -> str:
    """The bind address, or a one-line error for an empty or malformed one."""
    name = _bare(address)
    if not name:
        raise TobioError("--address is empty: give 127.0.0.1 (this machine only) or an address to serve on "
                         "(0.0.0.0 for every interface, with --token)")
    if any(c.isspace() or c in "/?#@" for c in name) or len(name) > 253:
        raise TobioError(f"--address {address!r} is not an IP address or host name")
    return name


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise TobioError(f"--port {port} is out of range (1-65535)")
    return port


def _names(values: Iterable[str]) -> list[str]:
    """Split comma-separated values; accept full URLs (`https://host:8443`) and bare names alike."""
    out = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item:
                out.append(item)
    return out


def allowed_hosts(address: str, extra: Iterable[str] = ()) -> set[str]:
    """Host names the page answers to: loopback names, the bound address (unless a wildcard), `--allow-host`."""
    hosts = set(LOOPBACK_NAMES)
    name = _bare(address)
    if name and name not in WILDCARDS:
        hosts.add(name)
    for item in _names(extra):
        host = item if item == ANY else urlsplit(item if "//" in item else f"//{item}").hostname
        if not host:
            raise TobioError(f"--allow-host {item!r} is not a host name")
        hosts.add(host.lower())
    return hosts


def allowed_origins(hosts: Iterable[str], port: int, extra: Iterable[str] = ()) -> list[str]:
    """Websocket origins (as `host[:port]`, an Origin's netloc): the allowed hosts on our port, plus `--allow-origin`."""
    origins = set()
    for host in hosts:
        if host == ANY:
            origins.add(ANY)
            continue
        if ":" in host:  # the page is never served under an IPv6 literal (host_allowed): a name instead
            continue
        origins.add(f"{host}:{port}")
        if port in (80, 443):  # the browser leaves the default port out of the Origin
            origins.add(host)
    for item in _names(extra):
        netloc = urlsplit(item).netloc if "//" in item else item
        if not netloc:
            raise TobioError(f"--allow-origin {item!r} is not an origin (like https://host:port)")
        origins.add(netloc.lower())
    return sorted(origins)


_HOST = re.compile(r"(?:(?P<name>[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_.])?)|\[(?P<ip6>[0-9a-f:.]{2,45})\])"
                   r"(?::(?P<port>[0-9]{1,5}))?", re.IGNORECASE)
MAX_HOST = 300


def host_name(host_header: str) -> str | None:
    """The name a Host header asks for (lower case, an IPv6 literal without brackets), or None when the
    header is not a well-formed `name[:port]` / `[ipv6][:port]` at all."""
    if len(host_header) > MAX_HOST or not host_header.isascii():
        return None
    match = _HOST.fullmatch(host_header)
    if match is None or (match.group("port") is not None and not 0 < int(match.group("port")) <= 65535):
        return None
    if match.group("ip6") is not None:
        try:
            return str(ipaddress.IPv6Address(match.group("ip6")))
        except ValueError:
            return None
    return match.group("name").lower().rstrip(".")


def host_allowed(host_header: str, hosts: set[str]) -> bool:
    """A well-formed Host naming an allowed host. Never an IPv6 literal: the Origin check compares
    `host:port` netlocs, and a name (localhost) serves the same page without the ambiguity."""
    name = host_name(host_header)
    return name is not None and ":" not in name and (ANY in hosts or name in hosts)


class _ForeignHost(Matcher):
    """Matches the requests whose Host is malformed or not on the list, so they reach `_Refused` only."""

    def __init__(self, hosts: set[str]) -> None:
        self.hosts = hosts

    def match(self, request: Any) -> dict[str, Any] | None:
        return None if host_allowed(request.headers.get("Host", ""), self.hosts) else {}


class _Refused(RequestHandler):
    def check_xsrf_cookie(self) -> None:
        """Nothing to check: every request here is refused, and says why (not a 403 for a missing XSRF)."""

    def prepare(self) -> None:
        header = self.request.headers.get("Host", "")
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        name = host_name(header)
        if name is None:
            log.warning("web: refused a request with a malformed Host header %r", header[:80])
            self.set_status(400)
            self.finish("400: malformed Host header\n")
            return
        if ":" in name:
            self.set_status(400)
            self.finish("400: the page cannot be served under an IPv6 address; use a host name (localhost)\n")
            return
        log.warning("web: refused a request for Host %r (not allowed; see --allow-host)", header[:80])
        self.set_status(403)
        self.finish("403: this host name is not allowed (restart the server with --allow-host NAME)\n")


def guard_hosts(application: Any, hosts: set[str]) -> None:
    """Put the Host check ahead of every route of a tornado application."""
    application.default_router.rules.insert(0, Rule(_ForeignHost(hosts), _Refused))
