"""`tobio web`: serve the chat page in the foreground until Ctrl-C. Every error is one line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (not the usage block), like every other Tobio error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `tobio web --help`)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="tobio", description="Tobio: artificial people.")
    sub = parser.add_subparsers(dest="command", required=True)
    web = sub.add_parser("web", help="serve the chat web page")
    web.add_argument("--config", help="kernel config (default: $TOBIO_CONFIG, ./configs/kernel.yaml, else configs/ in the data dir)")
    web.add_argument("--database", help="database URL")
    web.add_argument("--model", metavar="URL", default=os.environ.get("TOBIO_MODEL_URL") or None,
                     help="chat on an OpenAI-compatible server: http://HOST:PORT/v1[#MODEL]; "
                          "key from $TOBIO_MODEL_API_KEY; default $TOBIO_MODEL_URL, else the embedded model")
    web.add_argument("--port", type=int, default=5006)
    web.add_argument("--address", default="127.0.0.1", help="bind address (other than loopback needs --token)")
    web.add_argument("--token", help="password for the page; required off loopback "
                                     "($TOBIO_WEB_TOKEN keeps it off the command line)")
    web.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                     help="another host name the page answers to (repeat or comma-separate); "
                          "loopback names and --address always work")
    web.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                     help="another origin allowed to open the page's websocket, like https://host:8443")
    web.add_argument("--tls-cert", metavar="FILE", help="serve over HTTPS with this certificate (PEM)")
    web.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM), unless in --tls-cert")
    from tobio.cluster.up import add_arguments

    add_arguments(sub.add_parser("cluster", help="run several kernels sharing one PostgreSQL"))
    args = parser.parse_args(argv)
    if args.command == "cluster":
        from tobio.cluster.up import run

        return run(args)
    from tobio.errors import TobioError
    from tobio.web.hosts import allowed_hosts, allowed_origins, check_address, check_port
    from tobio.web.serve import check_token

    try:  # the cheap checks first: a typo should not wait for the kernel to start
        address = check_address(args.address)
        allowed_origins(allowed_hosts(address, args.allow_host), check_port(args.port), args.allow_origin)
        check_token(args.token, address)
        return _serve(args)
    except TobioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _serve(args: argparse.Namespace) -> int:
    from tobio.kernel import Kernel
    from tobio.models.server_flag import kernel_config
    from tobio.web.hosts import WILDCARDS
    from tobio.web.serve import serve

    with Kernel(kernel_config(args.config, args.model), database=args.database) as kernel:
        server = serve(kernel, args.address, args.port, args.token,
                       allow_hosts=args.allow_host, allow_origins=args.allow_origin,
                       certfile=args.tls_cert, keyfile=args.tls_key)
        print(f"serving Tobio on {server.url} (Ctrl-C stops)", file=sys.stderr)
        if args.address.strip("[] ") in WILDCARDS:
            print("on every interface: browsers must use a loopback name or one given with --allow-host",
                  file=sys.stderr)
        try:
            while server.is_alive():
                server.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
