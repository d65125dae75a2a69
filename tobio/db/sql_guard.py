"""Parse an agent's SQL, refuse anything outside the allow-lists, and rewrite it over scoped rows.

What runs is regenerated from the checked syntax tree, never the text the agent typed, so comments,
quoting and dialect quirks cannot survive the round trip. Every table reference is pointed at a
relation the caller chose (tobio.db.agent_sql: a temporary table holding only the agent's rows).
Every CTE gets a generated name: if the database resolves a name differently from us, it finds
nothing real instead of a table we did not scope.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from tobio.db import sql_allow
from tobio.errors import CommandError

DIALECTS = {"duckdb": "duckdb", "sqlite": "sqlite", "postgresql": "postgres"}
MAX_QUERY_CHARS = 20_000
_ROOTS = (exp.Select, exp.Union, exp.Intersect, exp.Except)
_TABLE_ARGS = {"this", "alias"}
CTE_PREFIX = "_tobio_cte_"

# table name -> the qualified name of the relation to read instead, or None if there is no such table
Relations = Callable[[str], "str | None"]


def _arg(node: Any, name: str) -> object:
    """An arg under its name in this sqlglot release or the older one (`with_` / `with`)."""
    value = node.args.get(name + "_")
    return value if value is not None else node.args.get(name)


def parse_one_select(query: str, dialect: str) -> exp.Expression:
    """The single SELECT-like statement in `query`, or a CommandError saying why not."""
    if len(query) > MAX_QUERY_CHARS:
        raise CommandError(f"agent SQL is limited to {MAX_QUERY_CHARS} characters")
    try:
        statements = [s for s in sqlglot.parse(query, read=dialect) if s is not None]
    except RecursionError:
        raise CommandError("SQL error: the statement is nested too deeply") from None
    except Exception as exc:  # sqlglot's errors, and anything it trips on, become one line
        text = str(exc).strip().splitlines()
        raise CommandError(f"SQL error: {text[0] if text else type(exc).__name__}") from None
    if len(statements) != 1:
        raise CommandError("agents may run exactly one SELECT statement at a time")
    root = statements[0]
    if not isinstance(root, _ROOTS) or type(root) not in _ROOTS:
        raise CommandError("agents may only run SELECT statements (read-only, their own rows)")
    return root


def check(root: exp.Expression) -> None:
    """Refuse any node, function, type or name outside the allow-lists."""
    for node in root.walk():
        kind = type(node)
        if kind is exp.Anonymous:
            name = str(node.this)
            if name.lower() not in sql_allow.ANONYMOUS:
                raise CommandError(f"agents may not call the function {name}() in SQL")
            continue
        if kind not in sql_allow.NODES and kind not in sql_allow.FUNCTIONS:
            what = node.sql_name() if isinstance(node, exp.Func) else kind.__name__
            raise CommandError(f"agents may not use {what} in SQL (only SELECT over their own tables)")
        if isinstance(node, exp.Table):
            _check_table(node)
        elif kind is exp.Column and (node.args.get("db") or node.args.get("catalog")):
            raise CommandError("agents may not name schemas or catalogs in SQL (their view is already scoped)")
        elif kind is exp.Var and str(node.this).upper() not in sql_allow.VARS:
            raise CommandError(f"agents may not use the word {node.this} there in SQL")
        elif kind is exp.DataType and node.this not in sql_allow.TYPES:
            raise CommandError(f"agents may not cast to {node.sql()} in SQL")
        elif kind is exp.Lateral and not isinstance(node.this, exp.Subquery):
            raise CommandError("agents may use LATERAL only with a subquery")
        elif kind is exp.With and node.args.get("recursive"):
            raise CommandError("agents may not use recursive CTEs")
        elif kind is exp.With:
            names = [cte.alias_or_name.lower() for cte in node.expressions]
            if len(set(names)) != len(names):
                raise CommandError("SQL error: a CTE name is defined twice")


def _check_table(table: exp.Table) -> None:
    if table.args.get("db") or table.args.get("catalog"):
        raise CommandError("agents may not name schemas or catalogs in SQL (their view is already scoped)")
    if not isinstance(table.this, exp.Identifier):
        raise CommandError("agents may read only tables by name (no table functions, files or literals)")
    extra = [k for k, v in table.args.items() if k not in _TABLE_ARGS and v not in (None, False, [])]
    if extra:
        raise CommandError(f"agents may not use {extra[0].upper()} on a table in SQL")


def _cte_for(table: exp.Table) -> exp.CTE | None:
    """The CTE this table reference names, by the SQL scoping rules of a non-recursive WITH."""
    name = table.name.lower()
    child: Any = table
    node: Any = table.parent
    skip: Any = None  # a query whose WITH we left through one of its CTEs
    while node is not None:
        if isinstance(node, exp.With) and isinstance(child, exp.CTE):
            position = next(i for i, cte in enumerate(node.expressions) if cte is child)  # not ==: equal trees
            earlier = node.expressions[:position]
            found = [c for c in earlier if c.alias_or_name.lower() == name]
            if found:
                return found[-1]  # type: ignore[no-any-return]  # sqlglot's expressions list is untyped
            skip = node.parent
        else:
            with_ = _arg(node, "with")
            if isinstance(with_, exp.With) and node is not skip:
                found = [c for c in with_.expressions if c.alias_or_name.lower() == name]
                if found:
                    return found[-1]  # type: ignore[no-any-return]  # sqlglot's expressions list is untyped
        child, node = node, node.parent
    return None


def _alias_for(table: exp.Table) -> exp.TableAlias:
    alias = table.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.this:
        return alias
    columns = alias.args.get("columns") if isinstance(alias, exp.TableAlias) else None
    return exp.TableAlias(this=exp.to_identifier(table.name), columns=columns)


def _cap_rows(root: exp.Expression, most: int) -> None:
    """LIMIT the statement to `most` rows, so the database never builds more than is shown."""
    current = root.args.get("limit")
    if current is None:
        root.set("limit", exp.Limit(expression=exp.Literal.number(most)))
        return
    value = current.expression if isinstance(current, exp.Limit) else None
    if not (isinstance(value, exp.Literal) and value.is_int):
        raise CommandError("an agent's outermost LIMIT must be a plain number")
    if int(value.this) > most:
        current.set("expression", exp.Literal.number(most))


def rewrite(root: exp.Expression, dialect: str, relations: Relations, limit: int | None) -> str:
    """Point tables at their scoped relations, rename CTEs, cap the rows; returns the SQL to run."""
    root = normalize_identifiers(root, dialect=dialect)
    tables = list(root.find_all(exp.Table))
    targets = {id(t): _cte_for(t) for t in tables}
    renamed = {id(cte): f"{CTE_PREFIX}{i}" for i, cte in enumerate(root.find_all(exp.CTE))}
    for table in tables:
        cte = targets[id(table)]
        alias = _alias_for(table)
        if cte is not None:
            table.replace(exp.Table(this=exp.to_identifier(renamed[id(cte)]), alias=alias))
            continue
        source = relations(table.name.lower())
        if source is None:
            raise CommandError(f"agents may not read '{table.name}': no such table in their view")
        scoped = exp.to_table(source, dialect=dialect)
        scoped.set("alias", alias)
        table.replace(scoped)
    for cte in list(root.find_all(exp.CTE)):
        if id(cte) in renamed:
            cte.args["alias"].set("this", exp.to_identifier(renamed[id(cte)]))
    if limit is not None:
        _cap_rows(root, limit + 1)
    # Quoting every name makes a bare word a column, never a keyword like `user`; SQLite would instead
    # read a quoted name that is no column as a string, and has no such bare words, so it is spared.
    identify = dialect != "sqlite"
    return root.sql(dialect=dialect, identify=identify, comments=False, unsupported_level=ErrorLevel.RAISE)


def compile_agent_sql(query: str, backend: str, relations: Relations, limit: int | None) -> str:
    """Check an agent's statement and return the SQL to run in its place (see module docstring)."""
    dialect = DIALECTS[backend]
    root = parse_one_select(query, dialect)
    check(root)
    try:
        return rewrite(root, dialect, relations, limit)
    except CommandError:
        raise
    except RecursionError:
        raise CommandError("SQL error: the statement is nested too deeply") from None
    except Exception as exc:  # a rewrite sqlglot cannot generate is the agent's error
        raise CommandError(f"SQL error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
