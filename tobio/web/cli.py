"""`tobio web`: serve the chat page in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tobio", description="Tobio: artificial people.")
    sub = parser.add_subparsers(dest="command", required=True)
    web = sub.add_parser("web", help="serve the chat web page")
    web.add_argument("--config", help="kernel config (default: $TOBIO_CONFIG, ./configs/kernel.yaml)")
    web.add_argument("--database", help="database URL")
    web.add_argument("--port", type=int, default=5006)
    web.add_argument("--address", default="127.0.0.1", help="bind address (other than loopback needs --token)")
    web.add_argument("--token", help="password for the page; required off loopback")
    args = parser.parse_args(argv)
    from tobio.errors import TobioError
    from tobio.kernel import Kernel
    from tobio.web.serve import serve

    try:
        with Kernel(args.config, database=args.database) as kernel:
            print(f"serving Tobio on http://{args.address}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
            serve(kernel, args.address, args.port, args.token, threaded=False)
    except TobioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
