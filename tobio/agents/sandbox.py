"""SQL for agents: read-only, and limited to the agent's own rows.

Inside the statement's transaction, temporary views named like the real tables shadow them, each
filtered to what this agent experienced (its threads, the messages pushed to them, its own states,
runs and steps). Tables nobody scoped are shadowed by empty views: new modules' tables are private
until someone says otherwise. Statements naming a schema or catalog are refused, since they could
reach around the views.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tobio.errors import CommandError

# table -> filter on the real table `t`, with {me} for the agent's id
SCOPES = {
    "threads": "t.agent_id = {me}",
    "pushes": "t.thread_id IN (SELECT id FROM {real_threads} WHERE agent_id = {me})",
    "messages": "t.agent_id = {me} OR t.id IN (SELECT p.message_id FROM {real_pushes} p JOIN {real_threads} h "
                "ON h.id = p.thread_id WHERE h.agent_id = {me})",
    "summaries": "t.thread_id IN (SELECT id FROM {real_threads} WHERE agent_id = {me})",
    "state": "t.agent_id = {me}",
    "runs": "t.agent_id = {me}",
    "steps": "t.agent_id = {me}",
    "channels": "TRUE",
}
# Other agents appear by name and type only.
AGENTS_VIEW = ("SELECT id, name, type, status, created_at, CASE WHEN id = {me} THEN config END AS config, "
               "CASE WHEN id = {me} THEN state_dict END AS state_dict FROM {real_agents}")
_QUALIFIED = re.compile(r"""(\b|")(main|temp|pg_catalog|public|information_schema|system)("?)\s*\.""", re.IGNORECASE)
_FILES = re.compile(r"\b(read_\w+|glob|attach|copy|install|load|pragma)\b", re.IGNORECASE)


def _real(conn: Connection, table: str) -> str:
    dialect = conn.dialect.name
    if dialect == "duckdb":
        catalog = conn.exec_driver_sql("SELECT current_database()").scalar()
        return f'"{catalog}".main."{table}"'
    if dialect == "sqlite":
        return f'main."{table}"'
    return f'public."{table}"'


def check_query(conn: Connection, query: str) -> None:
    """Refuse what could reach around the views: qualified names and file functions."""
    catalog = conn.exec_driver_sql("SELECT current_database()").scalar() if conn.dialect.name == "duckdb" else None
    if _QUALIFIED.search(query) or (catalog and re.search(rf'(\b|"){re.escape(str(catalog))}("?)\s*\.', query)):
        raise CommandError("agents may not name schemas or catalogs in SQL (their view is already scoped)")
    if _FILES.search(query):
        raise CommandError("agents may not read files or change settings from SQL")


def create_views(conn: Connection, agent_id: int) -> list[str]:
    """Shadow every table with a view of this agent's rows; returns the view names to drop."""
    tables = sa.inspect(conn).get_table_names()
    real = {f"real_{t}": _real(conn, t) for t in ("threads", "pushes", "agents")}
    created = []
    for table in tables:
        if table == "agents":
            body = AGENTS_VIEW.format(me=int(agent_id), **real)
        else:
            condition = SCOPES.get(table, "FALSE").format(me=int(agent_id), **real)
            body = f"SELECT * FROM {_real(conn, table)} t WHERE {condition}"
        conn.exec_driver_sql(f'CREATE TEMP VIEW "{table}" AS {body}')
        created.append(table)
    return created


def drop_views(conn: Connection, names: list[str]) -> None:
    prefix = "temp." if conn.dialect.name in ("duckdb", "sqlite") else "pg_temp."
    for name in names:
        conn.exec_driver_sql(f'DROP VIEW IF EXISTS {prefix}"{name}"')
