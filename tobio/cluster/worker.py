"""One kernel process of a cluster: `python -m tobio.cluster.worker --database URL [kernel.yaml]`.

It runs until SIGTERM or SIGINT, then stops cleanly (handing its agents over at once); killed, its
agents move after the lease time. `tobio cluster up` starts several of these.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

STOP_S = 20.0  # longest clean stop before the process exits anyway


def kernel_config(config: str | None, *, lease_s: float | None, group: str | None, agents: list[str],
                  modules: list[str], placement: dict[str, str] | None = None) -> Any:
    """kernel.yaml (or the defaults) with its `cluster:` section filled in from the flags."""
    from tobio.config.schema import KernelConfig, load_kernel_config

    base = load_kernel_config(Path(config)) if config else KernelConfig()
    cluster: dict[str, Any] = dict(base.cluster or {})
    if lease_s is not None:
        cluster["lease_s"] = lease_s
    if group is not None:
        cluster["group"] = group
    if placement:
        cluster["placement"] = {**cluster.get("placement", {}), **placement}
    update: dict[str, Any] = {"cluster": cluster}
    if agents:
        update["agents"] = [str(Path(a).resolve()) for a in agents]
    if modules:
        update["modules"] = list(dict.fromkeys([*base.modules, *modules]))
    return base.model_copy(update=update)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tobio.cluster.worker", description=__doc__)
    parser.add_argument("config", nargs="?", help="kernel.yaml (default: the built-in defaults)")
    parser.add_argument("--database", required=True, metavar="URL", help="the PostgreSQL every kernel shares")
    parser.add_argument("--lease", type=float, default=None, metavar="SECONDS", help="lease time (cluster.lease_s)")
    parser.add_argument("--group", default=None, help="this kernel's group (cluster.group)")
    parser.add_argument("--agent", action="append", default=[], metavar="FILE", help="an agent file to start here")
    parser.add_argument("--module", action="append", default=[], help="a module to load besides kernel.yaml's")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s kernel pid %(process)d %(levelname)s %(name)s: %(message)s")
    from tobio.errors import TobioError
    from tobio.kernel import Kernel

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        config = kernel_config(args.config, lease_s=args.lease, group=args.group, agents=args.agent, modules=args.module)
        kernel = Kernel(config, database=args.database).start()
    except TobioError as exc:
        print(f"tobio: {exc}", file=sys.stderr)
        return 1
    assert kernel.cluster is not None
    print(f"ready {kernel.cluster.id}", flush=True)
    try:
        stop.wait()
    finally:
        # A stop that cannot finish (the database gone, a statement stuck) must not keep the process: its
        # leases then run out and the other kernels adopt its agents, as after a crash.
        def give_up() -> None:
            import faulthandler

            print(f"tobio: kernel did not stop within {STOP_S:g} s; exiting (where each thread was:)", file=sys.stderr, flush=True)
            faulthandler.dump_traceback(all_threads=True)
            loop = kernel.loop
            if loop is not None:  # what the stop awaits: each pending task's coroutine, where it waits
                import asyncio

                for task in list(asyncio.all_tasks(loop)):
                    task.print_stack(limit=8, file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)

        watchdog = threading.Timer(STOP_S, give_up)
        watchdog.daemon = True
        watchdog.start()
        kernel.close()
        watchdog.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
