"""Several kernel processes on one PostgreSQL: every message answered once, in order, wherever its agent runs;
a killed kernel's agents move; a paused one's late writes are refused; kernels starting together share nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cluster_helpers import agent_files, replies, rows, scalar, start_kernel, wait_ready

from tobio.cluster.node import delta_payloads, woken
from tobio.config.schema import KernelConfig
from tobio.errors import ConfigError, TobioError
from tobio.kernel import Kernel
from tobio.messages import Delta, Message

from conftest import _fresh_postgres, _postgres_url
from helpers import wait_until

pytestmark = pytest.mark.slow
LEASE_S = 3.0  # short, so adoption is quick; generous enough for a loaded machine's heartbeats (every 1 s)
WAIT_S = 90.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _fresh_postgres(_postgres_url())


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait()


def client(url: str, names: list[str]) -> Kernel:
    """A kernel in this process that posts and runs no agent (every agent is placed in the workers' group)."""
    cluster = {"lease_s": LEASE_S, "group": "client", "placement": {n: "workers" for n in names}}
    return Kernel(KernelConfig(modules=["scripted"], cluster=cluster), database=url).start()


def post_rounds(kernel: Kernel, channels: list[str], rounds: int, tag: str) -> list[int]:
    return [kernel.post_sync(ch, f"{tag} {i} on {ch}").id for i in range(rounds) for ch in channels]


def answered(url: str, expected: int) -> list[tuple[int, int, int, str]]:
    def enough() -> list[tuple[int, int, int, str]] | None:
        found = replies(url)
        return found if len(found) >= expected else None

    return wait_until(enough, timeout=WAIT_S, interval=0.2)


def check_exactly_once_in_order(url: str, posts: list[int], per_post: int) -> None:
    """Each post answered by each agent on its channel once; each agent answered in the order posted."""
    found = replies(url)
    counts = Counter((agent, reply_to) for _, agent, reply_to, _ in found)
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]
    per_message = Counter(reply_to for _, _, reply_to, _ in found)
    assert {m: per_message[m] for m in posts} == {m: per_post for m in posts}
    by_agent: dict[int, list[int]] = {}
    for _, agent, reply_to, _ in found:
        by_agent.setdefault(agent, []).append(reply_to)
    for agent, answered_ids in by_agent.items():
        assert answered_ids == sorted(answered_ids), f"agent {agent} answered out of order"


def layout(tmp_path: Path, kernels: int, per_channel: int, channels: int, delay: float = 0.0) -> tuple[list[str], list[list[Path]]]:
    """Agents on `channels` channels, `per_channel` each, spread over `kernels` kernels (each channel spans them)."""
    names = [f"a{c}x{k}" for c in range(channels) for k in range(per_channel)]
    files = agent_files(tmp_path / "agents", [(n, f"c{n[1:].split('x')[0]}") for n in names], names, delay)
    split: list[list[Path]] = [[] for _ in range(kernels)]
    for i, path in enumerate(files):
        split[i % kernels].append(path)
    return names, split


@pytest.mark.parametrize("kernels", [2, 3])
def test_every_message_answered_once_in_order_across_kernels(kernels: int, pg_url: str, tmp_path: Path,
                                                             procs: list[subprocess.Popen[str]]) -> None:
    names, split = layout(tmp_path, kernels, per_channel=kernels, channels=3)
    for files in split:
        procs.append(start_kernel(pg_url, files, LEASE_S))
    ids = [wait_ready(p) for p in procs]
    owners = rows(pg_url, "SELECT DISTINCT kernel_id FROM leases")
    assert sorted(k for (k,) in owners) == sorted(ids)  # every kernel runs some of the agents
    kernel = client(pg_url, names)
    try:
        posts = post_rounds(kernel, ["c0", "c1", "c2"], 15, "line")
        answered(pg_url, len(posts) * kernels)
        kernel.run("sql SELECT 1")
    finally:
        kernel.close()
    check_exactly_once_in_order(pg_url, posts, kernels)


def test_killed_kernel_agents_move_with_nothing_lost_or_doubled(pg_url: str, tmp_path: Path,
                                                                procs: list[subprocess.Popen[str]]) -> None:
    names, split = layout(tmp_path, 2, per_channel=2, channels=2, delay=0.05)
    for files in split:
        procs.append(start_kernel(pg_url, files, LEASE_S))
    victim_id, survivor_id = (wait_ready(p) for p in procs)
    kernel = client(pg_url, names)
    try:
        posts = post_rounds(kernel, ["c0", "c1"], 30, "line")  # a backlog: 60 replies per agent at 20 a second
        wait_until(lambda: scalar(pg_url, f"SELECT count(*) FROM messages m JOIN leases l ON l.agent_id = m.agent_id"
                                          f" WHERE l.kernel_id = {victim_id} AND m.reply_to IS NOT NULL") >= 5,
                   timeout=WAIT_S)
        procs[0].kill()  # kill -9, mid-backlog and likely mid-reply
        procs[0].wait()
        posts += post_rounds(kernel, ["c0", "c1"], 5, "after")
        answered(pg_url, len(posts) * 2)
    finally:
        kernel.close()
    check_exactly_once_in_order(pg_url, posts, 2)
    assert {k for (k,) in rows(pg_url, "SELECT kernel_id FROM leases")} == {survivor_id}
    assert rows(pg_url, "SELECT min(epoch), max(epoch) FROM leases") == [(1, 2)]  # the victim's agents changed hands once


def test_a_boot_longer_than_the_lease_keeps_its_agents(pg_url: str, tmp_path: Path,
                                                       procs: list[subprocess.Popen[str]]) -> None:
    """Leases taken early in a long boot (many agents, a short lease) are renewed while it goes on: a kernel
    already up does not adopt them meanwhile, and the booting kernel drops none."""
    names, split = layout(tmp_path, 1, per_channel=40, channels=5)
    procs.append(start_kernel(pg_url, [], 0.5))
    other = wait_ready(procs[0])
    log = tmp_path / "booting.log"
    with open(log, "w") as err:
        procs.append(start_kernel(pg_url, split[0], 0.5, stderr=err))
        began = time.monotonic()
        booted = wait_ready(procs[1])
    assert time.monotonic() - began > 1.0, "the boot was not longer than the lease: the test shows nothing"
    time.sleep(1.0)
    assert rows(pg_url, "SELECT kernel_id, count(*), max(epoch) FROM leases GROUP BY kernel_id") == [(booted, len(names), 1)]
    assert other != booted and "its lease went to another kernel" not in log.read_text()


def test_paused_kernel_is_fenced_after_its_lease(pg_url: str, tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """SIGSTOP past the lease, SIGCONT: the stale kernel still has messages in its agents' inboxes, and what it
    writes for them is refused; the kernel that took them over answers them, once."""
    names, split = layout(tmp_path, 2, per_channel=2, channels=1, delay=0.2)
    log = tmp_path / "stale.log"
    with open(log, "w") as err:
        procs.append(start_kernel(pg_url, split[0], LEASE_S, stderr=err))
    procs.append(start_kernel(pg_url, split[1], LEASE_S))
    stale_id, other_id = (wait_ready(p) for p in procs)
    stale_agent = split[0][0].stem
    kernel = client(pg_url, names)
    try:
        posts = post_rounds(kernel, ["c0"], 20, "line")
        wait_until(lambda: scalar(pg_url, "SELECT count(*) FROM messages m JOIN agents a ON a.id = m.agent_id"
                                          f" WHERE a.name = '{stale_agent}'") >= 2, timeout=WAIT_S)
        procs[0].send_signal(signal.SIGSTOP)  # its inbox still holds most of the 20
        wait_until(lambda: scalar(pg_url, "SELECT l.kernel_id FROM leases l JOIN agents a ON a.id = l.agent_id"
                                          f" WHERE a.name = '{stale_agent}'") == other_id, timeout=WAIT_S)
        answered(pg_url, len(posts) * 2)
        procs[0].send_signal(signal.SIGCONT)
        time.sleep(LEASE_S)  # it wakes and tries to go on with its inbox: nothing of that may commit
        posts += post_rounds(kernel, ["c0"], 3, "after")
        answered(pg_url, len(posts) * 2)
        time.sleep(1.0)
    finally:
        kernel.close()
    check_exactly_once_in_order(pg_url, posts, 2)
    assert procs[0].poll() is None  # refused, not crashed
    said = log.read_text()
    assert f"agent {stale_agent}: its lease went to another kernel" in said, said[-2000:]
    print("fenced writes:", said.count("writes were refused"))
    assert scalar(pg_url, f"SELECT count(*) FROM leases WHERE kernel_id = {stale_id}") == len(split[0]) - 1


def test_kernels_starting_together_run_each_agent_once(pg_url: str, tmp_path: Path,
                                                       procs: list[subprocess.Popen[str]]) -> None:
    """Both kernels are given every agent file and open the fresh database at once."""
    names, split = layout(tmp_path, 1, per_channel=3, channels=2)
    for _ in range(2):
        procs.append(start_kernel(pg_url, split[0], LEASE_S))
    for proc in procs:
        wait_ready(proc)
    assert scalar(pg_url, "SELECT count(*) FROM agents") == len(names)
    assert scalar(pg_url, "SELECT count(*) FROM leases") == len(names)
    assert scalar(pg_url, "SELECT count(*) FROM threads") == len(names)
    kernel = client(pg_url, names)
    try:
        posts = post_rounds(kernel, ["c0", "c1"], 10, "line")
        answered(pg_url, len(posts) * 3)
        time.sleep(1.0)  # a second copy of an agent would answer again meanwhile
    finally:
        kernel.close()
    check_exactly_once_in_order(pg_url, posts, 3)
    assert scalar(pg_url, "SELECT count(*) = count(DISTINCT id) FROM messages")


def test_clean_stop_hands_agents_over_at_once(pg_url: str, tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    names, split = layout(tmp_path, 2, per_channel=2, channels=1)
    log = tmp_path / "leaving.log"
    with open(log, "w") as err:
        procs.append(start_kernel(pg_url, split[0], 600.0, stderr=err))  # a lease that would never run out here
    other = tmp_path / "staying.log"
    with open(other, "w") as err:
        procs.append(start_kernel(pg_url, split[1], 600.0, stderr=err))
    leaving, staying = (wait_ready(p) for p in procs)
    procs[0].send_signal(signal.SIGTERM)
    assert procs[0].wait(timeout=WAIT_S) == 0, log.read_text()[-3000:]
    try:
        wait_until(lambda: scalar(pg_url, f"SELECT count(*) FROM leases WHERE kernel_id = {staying}") == len(names), timeout=30)
    except AssertionError:
        raise AssertionError(other.read_text()[-3000:] + str(rows(pg_url, "SELECT * FROM leases"))) from None
    assert scalar(pg_url, f"SELECT count(*) FROM kernels WHERE id = {leaving}") == 0


def test_cluster_section_on_a_file_database_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Kernel(KernelConfig(cluster={}), database=f"duckdb:///{tmp_path / 'x.duckdb'}")
    assert "PostgreSQL" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "x.duckdb").exists()


def test_commands_see_the_cluster(pg_url: str, tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    """`kernel ls`, `agent ls`'s kernel column, `agent move`, and `wait` over every kernel; people only."""
    names, split = layout(tmp_path, 2, per_channel=2, channels=1)
    for files in split:
        procs.append(start_kernel(pg_url, files, LEASE_S))
    first, second = (wait_ready(p) for p in procs)
    kernel = client(pg_url, names)
    try:
        here = kernel.cluster.id if kernel.cluster else 0
        listing = kernel.run("kernel ls")
        assert [(str(r[0]).rstrip(" *"), r[6], r[7]) for r in listing.rows] == sorted(
            [(str(first), "up", 1), (str(second), "up", 1), (str(here), "up", 0)])
        agents = {r[0]: r[-1] for r in kernel.run("agent ls").rows}
        assert agents == {split[0][0].stem: first, split[1][0].stem: second}
        mover = split[0][0].stem
        assert kernel.run(f"agent move {mover} --to {second}").text == f"{mover} moves to kernel {second}"
        wait_until(lambda: {r[0]: r[-1] for r in kernel.run("agent ls").rows}[mover] == second, timeout=WAIT_S)
        posts = post_rounds(kernel, ["c0"], 5, "line")
        from shell.commands import wait_quiet

        kernel.call(wait_quiet(kernel, 0.3, 60))  # the shell's `wait`: the answers come from the other kernels
        assert len(replies(pg_url)) == 10
        check_exactly_once_in_order(pg_url, posts, 2)
        helper = tmp_path / "helper.yaml"
        helper.write_text("name: helper\ntype: scripted\ncommands: [kernel, agent]\n")
        kernel.run(f"agent spawn {helper}")
        for line in ("kernel ls", f"agent move {mover} --to {first}"):
            with pytest.raises(Exception, match="may not run"):
                kernel.run(line, caller="helper")
    finally:
        kernel.close()


def test_streamed_pieces_reach_a_front_end_in_another_kernel(pg_url: str, tmp_path: Path,
                                                             procs: list[subprocess.Popen[str]]) -> None:
    teller = tmp_path / "teller.yaml"
    teller.write_text("name: teller\ntype: scripted\nchannels: [story]\nstream: true\ntoken_delay_s: 0.01\n"
                      "replies: ['once upon a time there was {text} and it went on and on']\n")
    procs.append(start_kernel(pg_url, [teller], LEASE_S))
    wait_ready(procs[0])
    kernel = client(pg_url, ["teller"])
    seen: list[object] = []
    try:
        stop = kernel.transport.listen("story", seen.append)  # on the kernel's loop
        kernel.post_sync("story", "a kernel")
        wait_until(lambda: any(getattr(i, "content", "").startswith("once") for i in seen), timeout=WAIT_S)
        stop()
    finally:
        kernel.close()
    pieces = [i for i in seen if isinstance(i, Delta) and i.sender == "teller"]
    final = next(i for i in seen if isinstance(i, Message) and i.sender == "teller")
    assert "".join(p.text for p in pieces) == final.content == "once upon a time there was a kernel and it went on and on"
    assert pieces[-1].done and len(pieces) > 5


def test_a_loop_woken_by_an_event_stops_when_cancelled_as_the_event_is_set() -> None:
    """The heartbeat and the scan wait on an event with a timeout; a stop that cancels them at the moment
    the event is set (the scan is woken by every commit) must end them, not be swallowed."""
    async def main() -> bool:
        event = asyncio.Event()

        async def loop() -> None:
            while True:
                await woken(event, 10.0)
                event.clear()

        task = asyncio.create_task(loop())
        await asyncio.sleep(0)
        event.set()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        task.cancel()
        return bool(done) and task.cancelled()

    assert asyncio.run(main())


def test_long_streamed_pieces_are_cut_to_fit_notify() -> None:
    text = "é" * 9000 + "x" * 20000
    payloads = delta_payloads(7, [Delta("c", "s", "id", text), Delta("c", "s", "id", "", done=True)])
    assert len(payloads) > 3 and all(len(p.encode()) < 8000 for p in payloads)
    items = [item for p in payloads for item in json.loads(p)["d"]]
    assert "".join(i[3] for i in items) == text and items[-1][4] is True and not any(i[4] for i in items[:-1])


def test_a_fork_made_in_a_clustered_kernel_runs_there_with_its_lease(pg_url: str, tmp_path: Path) -> None:
    """`agent fork` in a kernel that shares its database: the fork takes its lease and answers in its chat."""
    from conftest import write
    from helpers import wait_until

    kernel = Kernel(KernelConfig(modules=["scripted"], cluster={"lease_s": LEASE_S}), database=pg_url).start()
    try:
        kernel.run(f"agent spawn {write(tmp_path / 'echo.yaml', 'name: echo' + chr(10) + 'type: scripted' + chr(10))}")
        kernel.call(kernel.agents.open_dm("user", "echo"))
        kernel.post_sync("dm.user.echo", "hello", sender=kernel.agents.live["user"], role="user")
        wait_until(lambda: kernel.run("agent ls").records()[0]["handled"] == 1, WAIT_S)
        kernel.run("agent fork echo --at now --as echo2")
        holders = kernel.call(kernel.cluster.holders())  # type: ignore[union-attr]
        assert holders[kernel.agents.live["echo2"].id] == kernel.cluster.id  # type: ignore[union-attr]
        kernel.post_sync("dm.user.echo2", "hello fork", sender=kernel.agents.live["user"], role="user")
        wait_until(lambda: any(r["name"] == "echo2" and r["handled"] == 1 for r in kernel.run("agent ls").records()), WAIT_S)
    finally:
        kernel.close()


def test_a_post_from_another_kernel_is_remembered_where_its_receiver_runs(pg_url: str, tmp_path: Path,
                                                                         procs: list[subprocess.Popen[str]]) -> None:
    """Module observers see posts made in other kernels: the worker's memory indexes a line the client
    kernel (which loads no memory) posted, for the agent that received it."""
    import os

    conf = tmp_path / "kernel.yaml"
    conf.write_text(
        "modules: [scripted, models, memory]\n"
        "providers: {s: {type: scripted, replies: ['ok'], embed_dim: 16}}\n"
        "models: {chat-default: {provider: s, model: x, purpose: chat}, embed: {provider: s, model: x, purpose: embed},\n"
        "         summarize: {provider: s, model: x, purpose: summarize}}\n"
        "settings: {memory: {tokenizer_model: chat-default, summarize: false}}\n")
    names, split = layout(tmp_path, 1, per_channel=1, channels=1)
    args = [sys.executable, "-m", "tobio.cluster.worker", str(conf), "--database", pg_url, "--lease", str(LEASE_S),
            "--group", "workers", "--agent", str(split[0][0])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env))
    wait_ready(procs[0])
    kernel = client(pg_url, names)
    try:
        posted = kernel.post_sync("c0", "the lighthouse keeper remembers the storm").id
        answered(pg_url, 1)
        wait_until(lambda: rows(pg_url, f"SELECT count(*) FROM memory_items WHERE kind = 'message' AND source_id = {posted}")
                   == [(1,)], WAIT_S)
    finally:
        kernel.close()


def test_cluster_up_starts_kernels_that_answer_and_stops_them_cleanly(pg_url: str, tmp_path: Path) -> None:
    """`tobio cluster up --kernels 2`: two kernel processes register, one runs the agent and answers; a
    SIGTERM stops both cleanly, their leases handed back."""
    import os

    names, split = layout(tmp_path, 1, per_channel=1, channels=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    up = subprocess.Popen([sys.executable, "-m", "tobio.web.cli", "cluster", "up", "--kernels", "2", "--database", pg_url,
                           "--lease", str(LEASE_S), "--group", "workers", "--module", "scripted", "--agent", str(split[0][0])],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert up.stdout is not None
        said = [up.stdout.readline().strip() for _ in range(3)]
        assert said[0].startswith("kernel ") and " up, pid " in said[0] and said[1].startswith("kernel "), said
        assert said[2].startswith("2 kernel(s) on postgresql+psycopg://") and "tobio" not in said[2].split("@")[0], said
        assert rows(pg_url, "SELECT count(*) FROM kernels") == [(2,)]
        kernel = client(pg_url, names)
        try:
            kernel.post_sync("c0", "anyone there?")
            answered(pg_url, 1)
        finally:
            kernel.close()
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=WAIT_S) == 0 and up.stdout.read().strip().endswith("stopped")
        assert rows(pg_url, "SELECT count(*) FROM leases WHERE kernel_id IS NOT NULL AND expires_at > (clock_timestamp() AT TIME ZONE 'UTC')") == [(0,)]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_an_agent_file_names_the_kernel_group_it_runs_in(pg_url: str, tmp_path: Path,
                                                         procs: list[subprocess.Popen[str]]) -> None:
    """`kernel_group: gpu` in an agent file: of two kernels given the file, only the gpu one runs it, and
    `agent move` to a kernel of another group is refused in one line."""
    folder = tmp_path / "agents"
    folder.mkdir()
    path = folder / "seer.yaml"
    path.write_text("name: seer\ntype: scripted\nchannels: [c0]\nreplies: ['seer heard: {text}']\nkernel_group: gpu\n")
    procs.append(start_kernel(pg_url, [path], LEASE_S, group="cpu"))
    cpu = wait_ready(procs[-1])
    procs.append(start_kernel(pg_url, [path], LEASE_S, group="gpu"))
    gpu = wait_ready(procs[-1])
    wait_until(lambda: rows(pg_url, "SELECT l.kernel_id FROM leases l JOIN agents a ON a.id = l.agent_id WHERE a.name = 'seer'")
               == [(gpu,)], WAIT_S)
    kernel = client(pg_url, ["seer"])
    try:
        kernel.post_sync("c0", "who runs you?")
        answered(pg_url, 1)
        with pytest.raises(TobioError, match="seer runs only in kernel group 'gpu'; kernel .* is in 'cpu'"):
            kernel.run(f"agent move seer --to {cpu}")
    finally:
        kernel.close()


def test_pause_resume_kill_and_show_reach_an_agent_in_another_kernel(pg_url: str, tmp_path: Path,
                                                                    procs: list[subprocess.Popen[str]]) -> None:
    """From a kernel that does not run it: the kernel running the agent pauses, resumes and kills it, and
    `agent show` says where it runs; an agent no kernel holds is changed at rest, and adopted as left."""
    names, split = layout(tmp_path, 2, per_channel=1, channels=2)  # a0x0 on c0 in the first kernel, a1x0 on c1
    for files in split:
        procs.append(start_kernel(pg_url, files, LEASE_S))
    first, second = (wait_ready(p) for p in procs)
    far, other = split[0][0].stem, split[1][0].stem
    kernel = client(pg_url, names)
    try:
        assert kernel.run(f"agent pause {far}").text == f"paused {far} (in kernel {first})"
        shown = kernel.run(f"agent show {far}").data
        assert (shown["status"], shown["kernel"]) == ("paused", first) and shown["threads"].endswith(":c0")
        held = post_rounds(kernel, ["c0", "c1"], 2, "while paused")
        answered(pg_url, 2)  # c1's two: the paused agent's wait in its inbox
        time.sleep(1.0)
        assert {name for *_, name in replies(pg_url)} == {other}
        kernel.run(f"agent spawn {_helper(tmp_path)}")
        with pytest.raises(Exception, match="may not run"):  # people only, as in its own kernel
            kernel.run(f"agent resume {far}", caller="helper")
        assert kernel.run(f"agent resume {far}").text == f"resumed {far} (in kernel {first})"
        answered(pg_url, 4)
        check_exactly_once_in_order(pg_url, held, 1)
        assert kernel.run(f"agent kill {other}").text == f"killed {other} (in kernel {second})"
        assert rows(pg_url, f"SELECT a.status, count(t.closed_at) FROM agents a JOIN threads t ON t.agent_id = a.id"
                            f" WHERE a.name = '{other}' GROUP BY a.status") == [("killed", 1)]
        # No kernel holds it: kill -9 both kernels, wait out the lease; the client may not run it (placement).
        for proc in procs:
            proc.kill()
            proc.wait()
        wait_until(lambda: kernel.run(f"agent show {far}").data["kernel"] == "none", timeout=WAIT_S)
        assert "no kernel runs it now" in kernel.run(f"agent pause {far}").text
        procs.append(start_kernel(pg_url, [], LEASE_S))
        third = wait_ready(procs[-1])
        wait_until(lambda: kernel.run(f"agent show {far}").data["kernel"] == third, timeout=WAIT_S)
        assert kernel.run(f"agent show {far}").data["status"] == "paused"  # adopted as it was left
        later = post_rounds(kernel, ["c0"], 1, "after the move")
        time.sleep(1.5)
        assert not [r for r in replies(pg_url) if r[2] == later[0]]
        assert kernel.run(f"agent resume {far}").text == f"resumed {far} (in kernel {third})"
        answered(pg_url, 5)
    finally:
        kernel.close()


def _helper(tmp_path: Path) -> Path:
    helper = tmp_path / "helper.yaml"
    helper.write_text("name: helper\ntype: scripted\ncommands: [agent]\n")
    return helper


def test_a_status_write_from_a_kernel_that_lost_the_lease_is_refused(pg_url: str, tmp_path: Path) -> None:
    """Pausing (as an agent's run of failures does by itself) is fenced like its replies: once the agent's lease
    went to another epoch, the stale kernel's status write is refused and the agent stops there."""
    agent = tmp_path / "solo.yaml"
    agent.write_text("name: solo\ntype: scripted\nchannels: [c0]\nreplies: ['{text}']\n")
    kernel = Kernel(KernelConfig(modules=["scripted"], agents=[str(agent)], cluster={"lease_s": 600.0}), database=pg_url).start()
    try:
        assert "solo" in kernel.agents.live
        # The kernel renews (and would drop the agent itself) when its listener connects, which can come after
        # start() on a busy machine: take the lease over only once that renewal is behind it.
        database = sa.engine.make_url(pg_url).database
        wait_until(lambda: scalar(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                          f"'{database}' AND query LIKE 'LISTEN %%'") == 1, timeout=30)
        time.sleep(1.0)
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:  # taken over, unbeknown to it
            conn.exec_driver_sql("UPDATE leases SET epoch = epoch + 1")
        engine.dispose()
        with pytest.raises(TobioError, match="no longer holds the lease"):
            kernel.call(kernel.agents.pause("solo"))
        assert scalar(pg_url, "SELECT status FROM agents WHERE name = 'solo'") == "running"
        wait_until(lambda: "solo" not in kernel.agents.live, timeout=10)
    finally:
        kernel.close()


def test_a_thread_fed_from_another_kernel_is_summarised_where_its_agent_runs(pg_url: str, tmp_path: Path,
                                                                           procs: list[subprocess.Popen[str]]) -> None:
    """The client kernel's memory stores each line's item first; the kernel running the (silent) agent still
    counts those lines toward its thread's budget and writes its summaries."""
    import os

    from tobio.config.schema import load_kernel_config

    models = ("providers: {s: {type: scripted, replies: ['a short summary'], embed_dim: 16}}\n"
              "models: {chat-default: {provider: s, model: x, purpose: chat}, embed: {provider: s, model: x, purpose: embed},\n"
              "         summarize: {provider: s, model: x, purpose: summarize}}\n")
    worker = tmp_path / "worker.yaml"
    worker.write_text("modules: [scripted, models, memory]\n" + models + "settings: {memory: {tokenizer_model: chat-default,"
                      " summarize_all_threads: true, budget_tokens: 64, index_delay_ms: 0}}\n")
    front = tmp_path / "front.yaml"
    front.write_text("modules: [scripted, models, memory]\n" + models + "settings: {memory: {tokenizer_model: chat-default,"
                     " summarize: false, index_delay_ms: 0}}\n")
    listener = tmp_path / "listener.yaml"
    listener.write_text("name: listener\ntype: scripted\nchannels: [c0]\n")  # says nothing: only the client's lines
    args = [sys.executable, "-m", "tobio.cluster.worker", str(worker), "--database", pg_url, "--lease", "60",
            "--group", "workers", "--agent", str(listener)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env))
    wait_ready(procs[0])
    config = load_kernel_config(front).model_copy(update={"cluster": {"lease_s": 60.0, "group": "client",
                                                                      "placement": {"listener": "workers"}}})
    kernel = Kernel(config, database=pg_url).start()
    try:
        procs[0].send_signal(signal.SIGSTOP)  # the client's memory stores every line's item first, for sure
        try:
            for i in range(12):
                kernel.post_sync("c0", f"line {i}: the lighthouse keeper tells the long story of the storm again")
            wait_until(lambda: scalar(pg_url, "SELECT count(*) FROM memory_items WHERE kind = 'message'") == 12, WAIT_S)
        finally:
            procs[0].send_signal(signal.SIGCONT)
        wait_until(lambda: scalar(pg_url, "SELECT count(*) FROM summaries s JOIN threads t ON t.id = s.thread_id"
                                          " JOIN agents a ON a.id = t.agent_id WHERE a.name = 'listener'"), WAIT_S)
    finally:
        kernel.close()
