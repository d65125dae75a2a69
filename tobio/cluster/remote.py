"""`agent pause|resume|kill` on an agent that runs in another kernel: the kernel holding its lease does it.

The request goes by NOTIFY to that kernel, which acts as the local person would there and answers by NOTIFY.
The check that the caller may do it (people only) is made where the command was typed; a NOTIFY on the
database is out of an agent's reach (its SQL calls no such function). An agent that no kernel holds now
(its kernel stopped and nobody has adopted it yet) is changed at rest, in the database, under its lease
row's lock: the kernel that adopts it next reads the new status (paused, running, or killed: not adopted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from tobio.cluster import sql
from tobio.errors import AgentError, TobioError

if TYPE_CHECKING:
    from tobio.cluster.node import Cluster

log = logging.getLogger(__name__)
CONTROL = "tobio_control"  # NOTIFY channel: requests to the kernel running an agent, and their answers
DONE = {"pause": "paused", "resume": "resumed", "kill": "killed"}
STATUS = {"pause": "paused", "resume": "running", "kill": "killed"}
NOT_HERE = "not running here"
ANSWER_S = 15.0  # a kill stops the agent, closes its threads and saves its state: on a busy kernel, a while
TRIES = 3  # the agent may change hands between finding its kernel and the request reaching it


def whereabouts(conn: Connection, name: str) -> tuple[int, str, int | None] | None:
    """(agent id, status, the kernel holding its lease now or None), or None if no agent has the name."""
    row = conn.exec_driver_sql(
        "SELECT a.id, a.status, l.kernel_id FROM agents a LEFT JOIN leases l ON l.agent_id = a.id"
        f" AND l.expires_at > {sql.NOW} WHERE a.name = %(n)s", {"n": name}).first()
    return None if row is None else (int(row[0]), str(row[1]), None if row[2] is None else int(row[2]))


def at_rest(conn: Connection, agent_id: int, status: str) -> bool:
    """Set the status of an agent no kernel holds (False if one holds it now): its lease row is locked
    first, so a kernel adopting it meanwhile waits, then reads the new status."""
    conn.exec_driver_sql("SELECT 1 FROM leases WHERE agent_id = %(a)s FOR UPDATE", {"a": agent_id})
    changed = conn.exec_driver_sql(
        f"UPDATE agents SET status = %(s)s, updated_at = {sql.NOW} WHERE id = %(a)s AND status <> 'killed'"
        f" AND NOT EXISTS (SELECT 1 FROM leases WHERE agent_id = %(a)s AND expires_at > {sql.NOW})",
        {"a": agent_id, "s": status}).rowcount
    if changed and status == "killed":  # as `agent kill` in its kernel: its threads close, its history stays
        conn.exec_driver_sql(f"UPDATE threads SET closed_at = {sql.NOW} WHERE agent_id = %(a)s AND closed_at IS NULL",
                             {"a": agent_id})
    return bool(changed)


def _notify(conn: Connection, payload: str) -> None:
    conn.exec_driver_sql(f"SELECT pg_notify('{CONTROL}', %(p)s)", {"p": payload})


class Remote:
    """This kernel's side of remote control: asking other kernels, and answering them."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._waiting: dict[str, asyncio.Future[tuple[bool, str]]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    async def act(self, op: str, name: str) -> str:
        """Pause, resume or kill `name`, which does not run in this kernel; returns what was done."""
        cluster = self.cluster
        for attempt in range(TRIES):
            found = await cluster.control(whereabouts, name)
            if found is None:
                raise AgentError(f"no agent named '{name}' (see `agent ls --all`)")
            agent_id, status, holder = found
            if status == "killed":
                raise AgentError(f"agent '{name}' was killed (a person brings it back with `agent spawn`)")
            if holder is None:
                if await cluster.control(at_rest, agent_id, STATUS[op]):
                    return f"{DONE[op]} {name} (no kernel runs it now; the one that adopts it finds it {STATUS[op]})"
            elif holder != cluster.id:
                ok, text = await self._ask(holder, op, name)
                if ok:
                    return f"{text} (in kernel {holder})"
                if text != NOT_HERE:
                    raise AgentError(text)
            await asyncio.sleep(0.2 * (attempt + 1))  # changing hands, or being started here: look again
        raise AgentError(f"agent '{name}' is changing kernels; try again in a moment")

    async def _ask(self, holder: int, op: str, name: str) -> tuple[bool, str]:
        request = uuid.uuid4().hex
        answer: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self._waiting[request] = answer
        try:
            payload = json.dumps({"to": holder, "from": self.cluster.id, "id": request, "op": op, "agent": name})
            await self.cluster.control(_notify, payload)
            try:
                async with asyncio.timeout(ANSWER_S):
                    return await answer
            except TimeoutError:
                raise AgentError(f"kernel {holder}, which runs '{name}', did not answer within {ANSWER_S:g} s "
                                 "(see `kernel ls`)") from None
        finally:
            self._waiting.pop(request, None)

    def heard(self, payload: str) -> None:
        """On the loop: a request for this kernel, or an answer to one of its own."""
        try:
            data: dict[str, Any] = json.loads(payload)
            if data["to"] != self.cluster.id:
                return
            if "re" in data:
                waiting = self._waiting.get(str(data["re"]))
                if waiting is not None and not waiting.done():
                    waiting.set_result((bool(data["ok"]), str(data["text"])))
                return
            request = (int(data["from"]), str(data["id"]), str(data["op"]), str(data["agent"]))
        except (ValueError, KeyError, TypeError):
            log.warning("cluster: a malformed control request was ignored")
            return
        task = asyncio.get_running_loop().create_task(self._serve(*request), name="cluster:control")
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, asker: int, request: str, op: str, name: str) -> None:
        manager = self.cluster.kernel.agents
        if op not in DONE:
            ok, text = False, f"unknown request {op!r}"
        elif name not in manager.live or manager.live[name].config.type == "user":
            ok, text = False, NOT_HERE
        else:
            try:
                await getattr(manager, op)(name)
                ok, text = True, f"{DONE[op]} {name}"
            except TobioError as exc:
                ok, text = False, str(exc)
        try:
            await self.cluster.control(_notify, json.dumps({"to": asker, "re": request, "ok": ok, "text": text}))
        except Exception as exc:  # the asker hears nothing and says so after its wait
            log.warning("cluster: could not answer kernel %d: %s", asker, str(exc).splitlines()[0] if str(exc) else exc)
