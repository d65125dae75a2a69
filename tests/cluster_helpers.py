"""Kernel processes sharing one PostgreSQL, for the cluster tests and bench/cluster.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

AGENT = ("name: {name}\ntype: scripted\nchannels: [{channel}]\nreplies: ['{name} heard: {{text}}']\n"
         "ignore: [{others}]\ndelay_s: {delay}\n")


def agent_files(folder: Path, names: Iterable[tuple[str, str]], everyone: list[str], delay: float = 0.0) -> list[Path]:
    """One scripted agent file per (name, channel): it answers people, never another agent."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, channel in names:
        path = folder / f"{name}.yaml"
        path.write_text(AGENT.format(name=name, channel=channel, others=", ".join(everyone), delay=delay))
        out.append(path)
    return out


def start_kernel(url: str, files: list[Path], lease_s: float, group: str = "workers", **popen: Any) -> subprocess.Popen[str]:
    """A kernel process running `files`' agents; returns once it says `ready <kernel id>` (read it from .kernel_id)."""
    args = [sys.executable, "-m", "tobio.cluster.worker", "--database", url, "--lease", str(lease_s), "--group", group,
            "--module", "scripted"]
    for path in files:
        args += ["--agent", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=popen.pop("stderr", subprocess.DEVNULL), text=True, env=env, **popen)
    return proc


def wait_ready(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready "):
        raise AssertionError(f"kernel process did not start (exit {proc.poll()}): {line!r}")
    return int(line.split()[1])


def replies(url: str) -> list[tuple[int, int, int, str]]:
    """Every answer so far: (reply id, replier's agent id, the message it answers, replier's name), in id order."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(  # type: ignore[misc]
                "SELECT m.id, m.agent_id, m.reply_to, a.name FROM messages m JOIN agents a ON a.id = m.agent_id"
                " WHERE m.reply_to IS NOT NULL ORDER BY m.id")]
    finally:
        engine.dispose()


def scalar(url: str, query: str) -> Any:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(query).scalar()
    finally:
        engine.dispose()


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(query)]
    finally:
        engine.dispose()
