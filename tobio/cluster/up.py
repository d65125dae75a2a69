"""`tobio cluster up --kernels N --database postgresql://…`: N kernel processes sharing one PostgreSQL.

Each is `python -m tobio.cluster.worker` (one kernel, its own loop and cores); they divide the agents by
lease. Ctrl-C (or SIGTERM) stops them all cleanly. To add a machine, run the same `tobio cluster up` there
against the same database: the kernels find each other in its `kernels` table.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up"], help="up: start the kernels and keep them running")
    parser.add_argument("--kernels", type=int, default=2, help="kernel processes to start on this machine (default 2)")
    parser.add_argument("--database", required=True, metavar="URL", help="the PostgreSQL they share, e.g. postgresql://user:pw@host/db")
    parser.add_argument("--config", help="kernel.yaml for every kernel (its `cluster:` section: lease_s, group, placement)")
    parser.add_argument("--lease", type=float, metavar="SECONDS", help="lease time (default: kernel.yaml's, else 10)")
    parser.add_argument("--group", help="these kernels' group (agents placed in a group run only there)")
    parser.add_argument("--agent", action="append", default=[], metavar="FILE", help="an agent file to run (repeat)")
    parser.add_argument("--module", action="append", default=[], help="a module to load besides kernel.yaml's (repeat)")
    parser.add_argument("--postgres", action="store_true",
                        help="start this machine's Debian PostgreSQL first (pg_ctlcluster; installed with apt)")


def database_url(url: str) -> str:
    """A PostgreSQL URL for SQLAlchemy with psycopg 3 (`postgresql://` is accepted as such)."""
    from tobio.errors import ConfigError

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"--database: not a database URL: {url!r}") from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError("--database: kernels share a PostgreSQL database (postgresql://…); a DuckDB or SQLite file "
                          "stays one kernel's")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def start_postgres() -> None:
    """Start the newest Debian PostgreSQL cluster on this machine (as .ci/postgres.sh does), unless up."""
    from tobio.errors import ConfigError

    if shutil.which("pg_ctlcluster") is None:
        raise ConfigError("--postgres: no Debian PostgreSQL here (apt-get install postgresql)")
    versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()])
    subprocess.run(["pg_ctlcluster", versions[-1].name, "main", "start"], capture_output=True)  # up already is fine
    for _ in range(30):
        if subprocess.run(["pg_isready", "-q"], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise ConfigError("--postgres: PostgreSQL did not start within 30 s (see `pg_lsclusters`)")


def run(args: argparse.Namespace) -> int:
    from tobio.errors import TobioError

    try:
        if args.kernels < 1:
            raise TobioError("--kernels: at least 1")
        url = database_url(args.database)
        if args.postgres:
            start_postgres()
    except TobioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "tobio.cluster.worker", "--database", url]
    if args.config:
        command.append(args.config)
    if args.lease is not None:
        command += ["--lease", str(args.lease)]
    if args.group:
        command += ["--group", args.group]
    for path in args.agent:
        command += ["--agent", path]
    for module in args.module:
        command += ["--module", module]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(args.kernels):
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("ready "):
                print(f"error: a kernel did not start (exit {proc.wait()})", file=sys.stderr)
                return 1
            print(f"kernel {line.split()[1]} up, pid {proc.pid}", flush=True)
        print(f"{len(procs)} kernel(s) on {sa.engine.make_url(url).render_as_string(hide_password=True)}; Ctrl-C stops them",
              flush=True)
        ended: set[int] = set()
        while not stopping:
            for proc in procs:
                if proc.pid not in ended and proc.poll() is not None:
                    print(f"kernel pid {proc.pid} exited ({proc.returncode}); its agents move to the others", flush=True)
                    ended.add(proc.pid)
            time.sleep(0.5)
    finally:
        stop_kernels(procs, timeout=60.0)
        print("stopped", flush=True)
    return 0


def stop_kernels(procs: list[subprocess.Popen[str]], timeout: float) -> list[int]:
    """Clean stops (SIGTERM: each hands its agents over); a kernel that cannot stop in `timeout` s is killed,
    and its leases run out as after a crash. Returns the pids killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    killed = []
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed.append(proc.pid)
    return killed
