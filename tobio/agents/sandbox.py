"""Which rows an agent's `sql` sees: one scoped SELECT per table, registered by whoever owns the table
(the SQL_SCOPE hook point: the kernel adds CORE_SCOPES below, a module its own tables').

tobio.db.agent_sql copies `relation_sql(...)` of every table an agent names into a temporary table
and runs the agent's statement on those copies alone, so these filters are the whole of what an
agent can read. Tables nobody scoped read as empty: a new module's tables stay private until it
says otherwise. Filters are trusted SQL over the real table `t`, with `{me}` for the agent's id and
`{real_<table>}` for any other real table, already qualified.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """`where` picks the agent's rows of the real table `t`; `select` may mask columns."""

    where: str
    select: str = "t.*"


CORE_SCOPES: dict[str, Scope] = {
    "threads": Scope("t.agent_id = {me}"),
    "pushes": Scope("t.thread_id IN (SELECT id FROM {real_threads} WHERE agent_id = {me})"),
    "messages": Scope(
        "t.agent_id = {me} OR t.id IN (SELECT p.message_id FROM {real_pushes} p JOIN {real_threads} h "
        "ON h.id = p.thread_id WHERE h.agent_id = {me})"),
    "summaries": Scope("t.thread_id IN (SELECT id FROM {real_threads} WHERE agent_id = {me})"),
    "state": Scope("t.agent_id = {me}"),
    "runs": Scope("t.agent_id = {me}"),
    "steps": Scope("t.agent_id = {me}"),
    "channels": Scope("TRUE"),
    # Other agents appear by name and type only.
    "agents": Scope(
        "TRUE",
        select="t.id, t.name, t.type, t.status, t.created_at, CASE WHEN t.id = {me} THEN t.config END AS config, "
        "CASE WHEN t.id = {me} THEN t.state_dict END AS state_dict"),
}


class _RealNames(dict[str, str]):
    """`{real_<table>}` in a filter, resolved on demand; `{me}` is set up front."""

    def __init__(self, me: int, real: Callable[[str], str]) -> None:
        super().__init__(me=str(int(me)))
        self._real = real

    def __missing__(self, key: str) -> str:
        if key.startswith("real_"):
            return self._real(key[len("real_"):])
        raise KeyError(key)


def relation_sql(table: str, known: Collection[str], real: Callable[[str], str], me: int | None,
                 scopes: Mapping[str, Scope]) -> str | None:
    """The SELECT an agent's reference to `table` runs instead; None when the table does not exist.

    `known` are the database's real tables, `real(name)` their qualified names, `me` the agent's id
    (None: an agent trusted with every agent's rows, still read-only and without files or catalogue),
    `scopes` the registered SQL_SCOPEs by lower-case table name.
    """
    name = table.lower()
    if name not in known:
        return None
    source = real(name)
    if me is None:
        return f"SELECT * FROM {source} AS t"
    scope = scopes.get(name)
    if scope is None:
        return f"SELECT * FROM {source} AS t WHERE FALSE"
    names = _RealNames(me, real)
    return f"SELECT {scope.select.format_map(names)} FROM {source} AS t WHERE {scope.where.format_map(names)}"
