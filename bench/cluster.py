"""Kernels sharing one PostgreSQL: throughput with 1 and 2 kernel processes (4 recorded), a kill -9 mid-run,
and the latency of a post in one kernel answered by an agent in another. Prints one JSON object.

Workload: scripted agents (1,000 in 50 channels; --quick: 100 in 10) that answer every person's message and no
agent's. A client kernel in this process posts `rounds` messages to every channel at once; each is answered by
every agent on its channel, and every answer is pushed to, and handled by, every other agent there.
`msgs_per_s_K`: messages written (posts and answers) per second with K kernel processes, from the first post to
the last answer. `scaling_2` = msgs_per_s_2 / msgs_per_s_1. Where the CPU went in each run (from /proc, so with
PostgreSQL on this machine): `cpu_s_postgres_K` (the server processes of the run's database and the background
ones), `cpu_s_kernels_K` (the K kernel processes), `cpu_s_client_K` (this process: the posting kernel and the
bench), `cpu_share_postgres_K`; `machine_busy_K` is the share of the machine's CPU busy meanwhile, and
`machine_busy_others_K` the part of it that was not this run (other users of a shared machine).

Kill: 2 kernels; one is killed with SIGKILL when a third of the answers are in. `lost`: (agent, message) pairs
never answered; `doubled`: answers beyond one per pair; `adoption_s`: from the kill until the survivor holds
every lease (lease time `lease_s`), watched while the run goes on; `resumed_s`: from the kill until the last of
the killed kernel's agents that still had work (`resumed_agents` of them) answered again from the survivor.

One kernel alone, in-process and not clustered: the same workload on DuckDB and on PostgreSQL
(`one_kernel_duckdb_msgs_per_s`, `one_kernel_postgres_msgs_per_s`) — what moving to PostgreSQL costs a
single machine. `clean_stops` / `unclean_stops`: kernel processes asked to stop (SIGTERM) that exited cleanly, or
not (the worker's 20 s watchdog, or killed). Needs a PostgreSQL server: --database, else $TOBIO_TEST_POSTGRES_URL; without one it says
so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from tobio.cluster.up import stop_kernels
from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel

ROOT = Path(__file__).resolve().parents[1]
AGENT = ("name: {name}\ntype: scripted\nkernel_group: workers\nchannels: [{channel}]\nreplies: ['{name}: {{text}}']\n"
         "ignore: [{others}]\n")
LEASE_S = 3.0


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    name = f"tobio_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def agent_files(folder: Path, agents: int, channels: int) -> tuple[list[str], list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"b{i}" for i in range(agents)]
    by_channel: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        by_channel.setdefault(i % channels, []).append(name)
    files = []
    for i, name in enumerate(names):
        channel = i % channels
        path = folder / f"{name}.yaml"
        path.write_text(AGENT.format(name=name, channel=f"ch{channel}", others=", ".join(by_channel[channel])))
        files.append(path)
    return names, files


def start(url: str, files: list[Path], workdir: Path) -> subprocess.Popen[str]:
    listing = workdir / f"agents_{uuid.uuid4().hex[:6]}.yaml"  # a kernel.yaml naming the files (no argv limit)
    listing.write_text("modules: [scripted]\nlog_level: WARNING\nagents:\n" + "".join(f"  - {p}\n" for p in files))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen([sys.executable, "-m", "tobio.cluster.worker", str(listing), "--database", url,
                             "--lease", str(LEASE_S), "--group", "workers"],
                            stdout=subprocess.PIPE, stderr=None if os.environ.get("TOBIO_BENCH_VERBOSE") else subprocess.DEVNULL, text=True, env=env)


def ready(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready "):
        raise SystemExit(f"a kernel process did not start (exit {proc.poll()})")
    return int(line.split()[1])


STOPS = {"clean_stops": 0, "unclean_stops": 0}  # kernel processes asked to stop: exited 0, or not (watchdog, killed)


def stop(procs: list[subprocess.Popen[str]]) -> None:
    """Clean stops; a kernel that cannot stop in time is killed (its leases run out, as after a crash)."""
    alive = [p for p in procs if p.poll() is None]
    for pid in stop_kernels(procs, timeout=90.0):
        print(f"kernel pid {pid} did not stop in 90 s; killed", file=sys.stderr)
    for proc in alive:
        STOPS["clean_stops" if proc.returncode == 0 else "unclean_stops"] += 1


def scalar(engine: sa.Engine, query: str) -> Any:
    with engine.connect() as conn:
        return conn.exec_driver_sql(query).scalar()


def client(url: str, names: list[str]) -> Kernel:
    cluster = {"lease_s": LEASE_S, "group": "client", "placement": {n: "workers" for n in names}}
    return Kernel(KernelConfig(modules=["scripted"], log_level="WARNING", cluster=cluster), database=url).start()


def post_all(kernel: Kernel, channels: int, rounds: int, tag: str = "m") -> int:
    async def burst() -> int:
        posts = [kernel.transport.post(f"ch{c}", f"{tag} {r}", role="user") for r in range(rounds) for c in range(channels)]
        return len(await asyncio.gather(*posts))

    return kernel.call(burst())


def wait_answers(engine: sa.Engine, expected: int, timeout: float, on_progress: Any = None) -> float:
    deadline = time.monotonic() + timeout
    while True:
        done = scalar(engine, "SELECT count(*) FROM messages WHERE reply_to IS NOT NULL")
        if on_progress is not None:
            on_progress(done)
        if done >= expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done} of {expected} answers after {timeout:.0f} s")
        time.sleep(0.05)


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process on this machine (None once it is gone, or if it runs elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat): other people's work included."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


class CpuMeter:
    """CPU seconds spent during a run by PostgreSQL (the server processes serving this run's database, and its
    background processes), by each kernel process, and by this process (the client kernel and the bench)."""

    def __init__(self, engine: sa.Engine, kernels: list[subprocess.Popen[str]]) -> None:
        self.engine = engine
        self.groups: dict[str, set[int]] = {"postgres": set(), "kernels": {p.pid for p in kernels}, "client": {os.getpid()}}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.refreshed = 0.0
        self.machine = (0.0, 0.0)

    def _postgres(self) -> None:
        with self.engine.connect() as conn:
            self.groups["postgres"].update(int(p) for p in conn.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL").scalars())
        self.refreshed = time.monotonic()

    def sample(self) -> None:
        if time.monotonic() - self.refreshed > 0.5:  # connections come and go: their pids, now and then
            self._postgres()
        for pid in set().union(*self.groups.values()):
            if (cpu := cpu_seconds(pid)) is not None:
                self.last[pid] = cpu

    def start(self) -> None:
        self._postgres()
        self.sample()
        self.first = dict(self.last)
        self.machine = machine_busy()

    def stop(self, suffix: str) -> dict[str, Any]:
        self.sample()
        used = {group: sum(self.last[p] - self.first.get(p, 0.0) for p in pids if p in self.last)
                for group, pids in self.groups.items()}
        busy, total = (b - a for a, b in zip(self.machine, machine_busy()))
        ours = sum(used.values())
        out: dict[str, Any] = {f"cpu_s_{group}_{suffix}": round(value, 2) for group, value in used.items()}
        out[f"cpu_share_postgres_{suffix}"] = round(used["postgres"] / ours, 2) if ours else None
        # Of the machine's CPU time in the run: busy at all, and busy with other work than this run's.
        out[f"machine_busy_{suffix}"] = round(busy / total, 2) if total else None
        out[f"machine_busy_others_{suffix}"] = round(max(0.0, busy - ours) / total, 2) if total else None
        return out


def throughput(server: str, workdir: Path, kernels: int, agents: int, channels: int, rounds: int) -> dict[str, Any]:
    """msgs_per_s_K, and where the CPU went meanwhile (CpuMeter)."""
    with fresh_database(server) as url:
        names, files = agent_files(workdir / f"agents{kernels}", agents, channels)
        procs = [start(url, files[k::kernels], workdir) for k in range(kernels)]
        engine = sa.create_engine(url)
        try:
            for proc in procs:
                ready(proc)
            kernel = client(url, names)
            meter = CpuMeter(engine, procs)
            try:
                per_channel = agents // channels
                expected = rounds * channels * per_channel
                meter.start()
                t0 = time.monotonic()
                posts = post_all(kernel, channels, rounds)
                t1 = wait_answers(engine, expected, timeout=1800, on_progress=lambda _done: meter.sample())
                cpu = meter.stop(str(kernels))
            finally:
                kernel.close()
            return {f"msgs_per_s_{kernels}": round((posts + expected) / (t1 - t0), 1), f"wall_s_{kernels}": round(t1 - t0, 2), **cpu}
        finally:
            engine.dispose()
            stop(procs)


def kill_run(server: str, workdir: Path, agents: int, channels: int, rounds: int) -> dict[str, Any]:
    with fresh_database(server) as url:
        names, files = agent_files(workdir / "agents_kill", agents, channels)
        procs = [start(url, files[k::2], workdir) for k in range(2)]
        engine = sa.create_engine(url)
        try:
            victim, survivor = (ready(p) for p in procs)
            kernel = client(url, names)
            try:
                expected = rounds * channels * (agents // channels)
                killed: list[float] = []  # monotonic, wall clock (UTC seconds)
                adopted: list[float] = []
                held = f"SELECT count(*) FROM leases WHERE kernel_id = {survivor} AND expires_at > now() AT TIME ZONE 'UTC'"

                def watch(done: int) -> None:
                    """Kill the victim a third of the way; then note when the survivor holds every lease (while
                    the run goes on: adopting must not wait for the backlog to be answered)."""
                    if not killed and done >= expected // 3:
                        procs[0].kill()
                        killed.extend([time.monotonic(), time.time()])
                    elif killed and not adopted and scalar(engine, held) >= len(files):
                        adopted.append(time.monotonic())

                post_all(kernel, channels, rounds)
                wait_answers(engine, expected, timeout=1800, on_progress=watch)
                while not adopted:
                    watch(expected)
                    time.sleep(0.02)
                time.sleep(1.0)  # a doubled answer would come in now
                with engine.connect() as conn:
                    total, pairs = conn.exec_driver_sql(
                        "SELECT count(*), count(DISTINCT (agent_id, reply_to)) FROM messages WHERE reply_to IS NOT NULL").one()
                    # Each of the victim's agents that still had work: its first answer after the kill.
                    resumed, count = conn.exec_driver_sql(
                        "SELECT max(first), count(*) FROM (SELECT min(m.created_at) AS first FROM messages m"
                        " JOIN agents a ON a.id = m.agent_id WHERE m.reply_to IS NOT NULL AND m.created_at > to_timestamp(%(t)s)"
                        " AT TIME ZONE 'UTC' AND a.name = ANY(%(n)s) GROUP BY m.agent_id) AS f",
                        {"t": killed[1], "n": [p.stem for p in files[0::2]]}).one()
            finally:
                kernel.close()
            assert victim != survivor
            resumed_s = (resumed.replace(tzinfo=timezone.utc).timestamp() - killed[1]) if resumed is not None else None
            return {"lost": expected - pairs, "doubled": total - pairs, "adoption_s": round(adopted[0] - killed[0], 2),
                    "resumed_s": None if resumed_s is None else round(resumed_s, 2), "resumed_agents": count,
                    "adopted_agents": len(files[0::2]), "lease_s": LEASE_S}
        finally:
            engine.dispose()
            stop(procs)


def latency(server: str, workdir: Path, samples: int) -> dict[str, float]:
    """A post in the client kernel answered by an agent in another kernel, seen back in the client."""
    with fresh_database(server) as url:
        names, files = agent_files(workdir / "agents_lat", 1, 1)
        proc = start(url, files, workdir)
        try:
            ready(proc)
            kernel = client(url, names)
            try:
                async def one(i: int) -> float:
                    answered: asyncio.Future[float] = asyncio.get_running_loop().create_future()

                    def seen(item: Any) -> None:
                        if getattr(item, "content", None) == f"b0: ping {i}" and not answered.done():
                            answered.set_result(time.perf_counter())

                    stop = kernel.transport.listen("ch0", seen)
                    try:
                        t0 = time.perf_counter()
                        await kernel.transport.post("ch0", f"ping {i}", role="user")
                        return (await asyncio.wait_for(answered, 30)) - t0
                    finally:
                        stop()

                times = [kernel.call(one(i)) * 1000 for i in range(samples + 3)][3:]  # the first few warm up
            finally:
                kernel.close()
        finally:
            stop([proc])
    times.sort()
    return {"cross_kernel_latency_ms_p50": round(statistics.median(times), 1),
            "cross_kernel_latency_ms_p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1)}


def one_kernel(url: str, workdir: Path, agents: int, channels: int, rounds: int) -> float:
    """The same workload in one in-process kernel, not clustered."""
    _, files = agent_files(workdir / f"agents_one_{uuid.uuid4().hex[:4]}", agents, channels)
    config = KernelConfig(modules=["scripted"], log_level="WARNING", agents=[str(p) for p in files])
    kernel = Kernel(config, database=url).start()
    try:
        expected = rounds * channels * (agents // channels)
        t0 = time.monotonic()
        posts = post_all(kernel, channels, rounds)

        def answers(conn: sa.Connection) -> int:
            return int(conn.exec_driver_sql("SELECT count(*) FROM messages WHERE reply_to IS NOT NULL").scalar_one())

        while kernel.call(kernel.db.call(answers)) < expected:
            time.sleep(0.05)
        return (posts + expected) / (time.monotonic() - t0)
    finally:
        kernel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 agents in 10 channels, fewer rounds, no 4-kernel run")
    parser.add_argument("--agents", type=int, help="agents (default 1,000; --quick 100)")
    parser.add_argument("--no-4", action="store_true", help="skip the 4-kernel run")
    parser.add_argument("--database", default=os.environ.get("TOBIO_TEST_POSTGRES_URL"),
                        help="a PostgreSQL server URL (a database per run is created in it and dropped)")
    args = parser.parse_args()
    if not args.database:
        print("bench/cluster.py needs PostgreSQL: --database URL or $TOBIO_TEST_POSTGRES_URL", file=sys.stderr)
        return 2
    # 20 rounds: ~21,000 messages and 400,000 pushes per run, several seconds, so a busy shared machine's noise
    # averages out; the kill run takes 10 (3 x 2 quick).
    agents, channels, rounds, samples = (100, 10, 3, 20) if args.quick else (1000, 50, 20, 200)
    kill_rounds = rounds * 2 if args.quick else rounds // 2
    agents = args.agents or agents
    out: dict[str, Any] = {"agents": agents, "channels": channels, "rounds": rounds, "cores": os.cpu_count(),
                           "load_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kernels in (1, 2) if args.quick or args.no_4 else (1, 2, 4):
            out.update(throughput(args.database, workdir, kernels, agents, channels, rounds))
            print(f"{kernels} kernel(s): {out[f'msgs_per_s_{kernels}']} msgs/s", file=sys.stderr, flush=True)
        out["scaling_2"] = round(out["msgs_per_s_2"] / out["msgs_per_s_1"], 2)
        out.update(kill_run(args.database, workdir, agents, channels, kill_rounds))
        out.update(latency(args.database, workdir, samples))
        out["one_kernel_duckdb_msgs_per_s"] = round(one_kernel(f"duckdb:///{workdir / 'one.duckdb'}", workdir, agents, channels, rounds), 1)
        with fresh_database(args.database) as url:
            out["one_kernel_postgres_msgs_per_s"] = round(one_kernel(url, workdir, agents, channels, rounds), 1)
    out.update(STOPS)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
