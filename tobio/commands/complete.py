"""Completion over the one command tree: names, flags and argument values, with help beside each.

Front ends (the shell's prompt, later the `%tobio` magic) ask `CommandCompleter.complete(text)` for
the candidates at the end of `text`. Values come from named sources (`Arg.complete`): the engine
knows `command` and `file` itself, SQL is completed by `complete_sql`, and the rest (`agent`,
`channel`, `module`, `thread`, `task`, `model`, `provider`, `run`) come from a `Sources` object. `KernelSources` reads
a live kernel and never blocks for long: slow lists (threads, the SQL schema) are cached and
refreshed in the background.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tobio.commands.tree import Arg, Command, Group
from tobio.hooks import COMPLETION_SOURCE

if TYPE_CHECKING:
    from tobio.commands.result import Result
    from tobio.kernel import Kernel

QUOTES = "'\""
_SAFE = re.compile(r"^[\w@%+=:,./~-]*$")


@dataclass(frozen=True)
class Candidate:
    """One completion: `text` replaces the `-start` characters before the cursor; `help` goes beside it."""

    text: str
    start: int
    display: str
    help: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Word:
    """A word as typed: its unquoted value, where it starts, how many characters it spans, an open quote."""

    value: str
    start: int
    length: int = 0
    quote: str | None = None


def split_partial(text: str) -> tuple[list[Word], Word]:
    """Split like a POSIX shell, tolerating an unfinished last word; returns (finished words, current)."""
    words: list[Word] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return words, Word("", n)
        start, buf, quote = i, [], None
        while i < n:
            ch = text[i]
            if quote:
                if ch == quote:
                    quote = None
                elif ch == "\\" and quote == '"' and i + 1 < n and text[i + 1] in '"\\$`':
                    i += 1
                    buf.append(text[i])
                else:
                    buf.append(ch)
            elif ch in QUOTES:
                quote = ch
            elif ch == "\\" and i + 1 < n:
                i += 1
                buf.append(text[i])
            elif ch.isspace():
                break
            else:
                buf.append(ch)
            i += 1
        word = Word("".join(buf), start, i - start, quote if i >= n else None)
        if i >= n:
            return words, word
        words.append(word)


def quote_for(value: str, word: Word, close: bool = True) -> str:
    """How `value` must be typed to replace `word`: keep the user's open quote, else quote if needed."""
    if word.quote == "'" or (word.quote is None and not _SAFE.match(value)):
        quoted = "'" + value.replace("'", "'\"'\"'") + "'" if word.quote else shlex.quote(value)
        return quoted if close else quoted[:-1]
    if word.quote == '"':
        return '"' + re.sub(r'(["\\$`])', r"\\\1", value) + ('"' if close else "")
    return value


class Sources(Protocol):
    """Where argument values come from: `values("agent")` -> [(name, help)], plus the SQL schema."""

    def values(self, source: str) -> list[tuple[str, str]]: ...

    def sql_schema(self) -> dict[str, list[tuple[str, str]]]: ...

    def sql_functions(self) -> list[tuple[str, str]]: ...


class NoSources:
    """No live values: names and flags still complete."""

    def values(self, source: str) -> list[tuple[str, str]]:
        return []

    def sql_schema(self) -> dict[str, list[tuple[str, str]]]:
        return {}

    def sql_functions(self) -> list[tuple[str, str]]:
        return []


class CommandCompleter:
    """Completes command lines against `root`, optionally from inside a subshell `group`."""

    def __init__(self, root: Group, sources: Sources | None = None) -> None:
        self.root = root
        self.sources: Sources = sources or NoSources()

    def complete(self, text: str, group: Group | None = None, extra: dict[str, str] | None = None) -> list[Candidate]:
        """Candidates for the end of `text`; `extra` adds first words (shell words such as `exit`)."""
        words, current = split_partial(text)
        base = group or self.root
        node: Group | Command = base
        for i, word in enumerate(words):
            if isinstance(node, Command):
                return self._arguments(node, text, words[i:], current)
            child = node.get(word.value) if text[word.start] not in QUOTES else None
            if child is None and i == 0 and base is not self.root:
                child = self.root.get(word.value)  # root commands stay reachable from a subshell
            if not isinstance(child, (Group, Command)):
                return []
            node = child
        if isinstance(node, Command):
            return self._arguments(node, text, [], current)
        return self._children(node, current, extra if not words else None, fallback=node is not self.root and not words)

    def complete_raw(self, cmd: Command, text: str) -> list[Candidate]:
        """Inside a raw-command subshell (`sql>`): `text` is the raw argument typed so far."""
        arg = cmd.raw_arg
        return complete_sql(text, self.sources) if arg is not None and arg.complete == "sql" else []

    # -- names -------------------------------------------------------------------------------
    def _children(self, group: Group, word: Word, extra: dict[str, str] | None, fallback: bool) -> list[Candidate]:
        if word.quote:
            return []
        if word.value.startswith("-"):
            return _matching([("--help", "show this help")], word, "flag")
        items = [(name, _node_help(node)) for name, node in sorted(group.children.items())]
        out = _matching(items + sorted((extra or {}).items()), word, "command")
        if fallback and word.value and not out:  # nothing here by that name: try the root's commands
            out = _matching([(n, _node_help(c)) for n, c in sorted(self.root.children.items())], word, "command")
        return out

    # -- arguments ---------------------------------------------------------------------------
    def _arguments(self, cmd: Command, text: str, done: list[Word], word: Word) -> list[Candidate]:
        raw = cmd.raw_arg
        positional: list[Word] = []
        used: set[str] = set()
        pending: Arg | None = None  # an option still waiting for its value
        options_over = False
        for w in done:
            quoted = text[w.start] in QUOTES
            if pending is not None:
                pending = None
            elif not options_over and w.value == "--" and not quoted:
                options_over = True
            elif not options_over and not quoted and (option := cmd.option(w.value.split("=", 1)[0])) is not None:
                used.add(option.name)
                pending = option if option.takes_value and "=" not in w.value else None
            elif raw is not None:
                return complete_sql(text[w.start:], self.sources) if raw.complete == "sql" else []
            else:
                positional.append(w)
        if pending is not None:
            return self._values(pending, word, [])
        if raw is not None and word.value and not word.value.startswith("-"):
            return complete_sql(text[word.start:], self.sources) if raw.complete == "sql" else []
        if word.value.startswith("-") and not word.quote and not options_over:
            name, eq, rest = word.value.partition("=")
            if not eq:
                return self._options(cmd, used, word)
            option = cmd.option(name)
            if option is None or not option.takes_value:
                return []
            return self._values(option, Word(rest, word.start + len(name) + 1, word.length - len(name) - 1), [])
        arg, consumed = _positional_at(cmd, positional)
        out = self._values(arg, word, consumed) if arg is not None else []
        if not word.value and not word.quote and (arg is None or not out or arg.nargs in ("*", "?")):
            out += self._options(cmd, used, word)
        return out

    def _options(self, cmd: Command, used: set[str], word: Word) -> list[Candidate]:
        items = []
        for arg in cmd.args:
            if not arg.positional and arg.name not in used:
                meta = "" if arg.flag else f" · {arg.metavar or arg.dest.upper()}"
                items.append((arg.name, f"{arg.help}{meta}".strip(" ·")))
        return _matching([*items, ("--help", "show this help")], word, "flag")

    def _values(self, arg: Arg, word: Word, consumed: list[Word]) -> list[Candidate]:
        if arg.choices:
            return _matching([(str(c), arg.help) for c in arg.choices], word, "value")
        if arg.complete == "command":
            node: Any = self.root
            for w in consumed:
                node = node.get(w.value) if isinstance(node, Group) else None
            return self._children(node, word, None, False) if isinstance(node, Group) else []
        if arg.complete == "file":
            return _files(word)
        if arg.complete is None:
            return []
        try:
            items = self.sources.values(arg.complete)
        except Exception:  # completion must never break the prompt
            return []
        return _matching(items, word, arg.complete)


def _node_help(node: Any) -> str:
    return f"{node.help} …" if isinstance(node, Group) else node.help


def _matching(items: Iterable[tuple[str, str]], word: Word, kind: str) -> list[Candidate]:
    """Candidates whose value starts with what was typed, quoted as the word needs, then a space."""
    out, seen = [], set()
    for value, help_text in items:
        if value not in seen and value.startswith(word.value):
            seen.add(value)
            out.append(Candidate(quote_for(value, word) + " ", -word.length, value, help_text, kind))
    return out


def _positional_at(cmd: Command, given: list[Word]) -> tuple[Arg | None, list[Word]]:
    """Which positional argument the next word fills, and the words it already took."""
    index = 0
    for arg in (a for a in cmd.args if a.positional and not a.raw):
        if arg.nargs in ("*", "+"):
            return arg, given[index:]
        count = arg.nargs if isinstance(arg.nargs, int) else 1
        if len(given) - index < count:
            return arg, given[index:]
        index += count
    return None, []


def _files(word: Word) -> list[Candidate]:
    """Paths in the directory the word names; a directory ends with '/' and leaves the word open."""
    head, slash, tail = word.value.rpartition("/")
    prefix = head + slash
    try:
        entries = sorted(os.scandir(os.path.expanduser(prefix or ".")), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for entry in entries:
        if entry.name.startswith(tail) and (tail.startswith(".") or not entry.name.startswith(".")):
            path, is_dir = prefix + entry.name, entry.is_dir()
            text = quote_for(path + "/", word, close=False) if is_dir else quote_for(path, word) + " "
            shown, kind = entry.name + "/" * is_dir, "directory" if is_dir else "file"
            out.append(Candidate(text, -word.length, shown, kind, "file"))
    return out


# -- SQL ---------------------------------------------------------------------------------------
SQL_KEYWORDS = (
    "SELECT FROM WHERE GROUP BY ORDER BY HAVING LIMIT OFFSET JOIN LEFT RIGHT FULL INNER OUTER CROSS "
    "ON USING AS AND OR NOT IN IS NULL LIKE ILIKE BETWEEN CASE WHEN THEN ELSE END DISTINCT ALL UNION "
    "EXCEPT INTERSECT WITH RECURSIVE OVER PARTITION WINDOW QUALIFY ASC DESC NULLS FIRST LAST EXISTS "
    "CAST SUMMARIZE DESCRIBE SHOW TABLES PIVOT UNPIVOT EXPLAIN ANALYZE INSERT INTO VALUES UPDATE SET "
    "DELETE CREATE TABLE VIEW TEMP OR REPLACE DROP ALTER COPY TO TRUE FALSE FILTER ROWS RANGE "
    "PRECEDING FOLLOWING UNBOUNDED CURRENT ROW SAMPLE"
).split()
_TABLE_CONTEXT = {"FROM", "JOIN", "INTO", "UPDATE", "TABLE", "SUMMARIZE", "DESCRIBE"}
_STATEMENT_START = ("SELECT", "WITH", "SUMMARIZE", "DESCRIBE", "SHOW", "EXPLAIN", "PIVOT", "FROM")
_ALIAS = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)(?:\s+(?:AS\s+)?([A-Za-z_]\w*))?", re.IGNORECASE)


def _sql_code(text: str) -> str | None:
    """`text` with string literals and comments blanked out; None if the cursor is inside one."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'" or text.startswith("--", i) or text.startswith("/*", i):
            end = {"'": "'", "-": "\n", "/": "*/"}[ch]
            close = text.find(end, i + (1 if ch == "'" else 2))
            if close < 0:
                return None
            close += len(end)
            out.append(" " * (close - i))
            i = close
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def sql_is_complete(text: str) -> bool:
    """Whether `text` ends a statement: a `;` outside strings and comments is the last thing in it."""
    code = _sql_code(text + "\n")
    return code is not None and code.rstrip().endswith(";")


def complete_sql(text: str, sources: Sources) -> list[Candidate]:
    """Keywords, tables, columns (of the tables the statement names) and functions at the cursor."""
    code = _sql_code(text)
    if code is None:
        return []
    statement = code.rsplit(";", 1)[-1]
    match = re.search(r'(?:"?([A-Za-z_][\w$]*)"?\.)?("?)([\w$]*)$', statement)
    assert match is not None
    qualifier, partial = match.group(1), match.group(3)
    typed = len(match.group(2)) + len(partial)
    before = statement[: match.start()]
    try:
        schema, functions = sources.sql_schema(), sources.sql_functions()
    except Exception:
        schema, functions = {}, []
    aliases = {m.group(2).lower(): m.group(1) for m in _ALIAS.finditer(statement)
               if m.group(2) and m.group(2).upper() not in SQL_KEYWORDS}
    lower = {t.lower(): t for t in schema}

    def columns_of(table: str) -> list[tuple[str, str]]:
        name = lower.get(table.lower(), table)
        return [(column, f"{name} · {kind}") for column, kind in schema.get(name, [])]

    def make(items: Iterable[tuple[str, str]], kind: str, case: bool = False) -> list[Candidate]:
        out = []
        for value, help_text in items:
            if value.lower().startswith(partial.lower()):
                shown = value.lower() if case and partial and partial.islower() else value
                out.append(Candidate(shown, -typed, shown, help_text, kind))
        return out

    if qualifier is not None:
        table = aliases.get(qualifier.lower(), qualifier)
        return make(columns_of(table), "column")
    previous = re.findall(r"[A-Za-z_]+", before)
    last = previous[-1].upper() if previous else ""
    tables = [(t, f"table · {len(cols)} columns") for t, cols in sorted(schema.items())]
    if last in _TABLE_CONTEXT:
        return make(tables, "table")
    keywords = [(k, "keyword") for k in SQL_KEYWORDS]
    if not previous:
        starts = make([(k, "keyword") for k in _STATEMENT_START], "keyword", case=True)
        return _unique(starts + make(keywords, "keyword", case=True))
    named = {t for t in schema if re.search(rf"\b{re.escape(t)}\b", statement, re.IGNORECASE)}
    named |= {lower[t.lower()] for t in aliases.values() if t.lower() in lower}
    columns = [c for t in sorted(named or schema) for c in columns_of(t)]
    out = make(columns, "column") + make(keywords, "keyword", case=True)
    if partial:
        out += make(tables, "table") + make(functions, "function", case=True)
    return _unique(out)


def _unique(candidates: list[Candidate]) -> list[Candidate]:
    """The first candidate for each text (a keyword may also be a statement start, a column two tables')."""
    seen: dict[str, Candidate] = {}
    for candidate in candidates:
        seen.setdefault(candidate.text, candidate)
    return list(seen.values())


# -- values from a live kernel -----------------------------------------------------------------
class _Cached:
    """A value fetched in the background: stale answers immediately, refreshes when older than `ttl`."""

    def __init__(self, fetch: Callable[[], Future[Any]], convert: Callable[[Any], Any], ttl: float, empty: Any) -> None:
        self.fetch, self.convert, self.ttl = fetch, convert, ttl
        self.value, self.when, self.loaded = empty, 0.0, False
        self._pending: Future[Any] | None = None
        self._lock = threading.RLock()  # a finished future runs its callback at once, in this thread

    def get(self, wait: float = 0.3) -> Any:
        with self._lock:
            if self._pending is None and time.monotonic() - self.when > self.ttl:
                try:
                    self._pending = self.fetch()
                    self._pending.add_done_callback(self._done)
                except Exception:  # kernel stopped: keep what we have
                    self._pending = None
            pending = self._pending
        if not self.loaded and pending is not None:
            with contextlib.suppress(Exception):  # timed out or failed: answer with what we have
                pending.result(wait)  # the first answer is worth a short wait
        return self.value

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending = None
            self.when = time.monotonic()
            with contextlib.suppress(BaseException):  # failed or cancelled: keep the old value
                self.value, self.loaded = self.convert(future.result()), True

    def invalidate(self) -> None:
        self.when = 0.0


_SCHEMA_SQL = {
    "duckdb": "SELECT table_name, column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
    "postgresql": "SELECT table_name, column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
    "sqlite": "SELECT m.name, p.name, p.type FROM sqlite_master m JOIN pragma_table_info(m.name) p "
    "WHERE m.type IN ('table', 'view') ORDER BY m.name, p.cid",
}
_FUNCTIONS_SQL = (
    "SELECT function_name, min(function_type), min(coalesce(description, '')) FROM duckdb_functions() "
    "WHERE regexp_matches(function_name, '^[a-z][a-z0-9_]*$') GROUP BY function_name ORDER BY function_name"
)


def _functions_of(result: Result) -> list[tuple[str, str]]:
    return [(name, (description or kind)[:60]) for name, kind, description in result.rows or []]


def _schema_of(result: Result) -> dict[str, list[tuple[str, str]]]:
    schema: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in result.rows or []:
        schema.setdefault(table, []).append((column, str(kind)))
    return schema


class KernelSources:
    """Completion values read from a running kernel; safe to call from any thread but the kernel's."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        dialect = kernel.db.dialect
        self._schema = _Cached(self._query(_SCHEMA_SQL.get(dialect, "")), _schema_of, 30.0, {})
        functions = _FUNCTIONS_SQL if dialect == "duckdb" else ""
        self._functions = _Cached(self._query(functions), _functions_of, 3600.0, [])
        self._threads = _Cached(self._query("thread ls", sql=False), lambda r: [
            (str(row[0]), f"{row[1]}@{row[2]}{' (closed)' if row[4] else ''}") for row in r.rows or []], 2.0, [])

    def _query(self, line: str, sql: bool = True) -> Callable[[], Future[Any]]:
        def fetch() -> Future[Any]:
            if not line:
                raise LookupError("no query for this database")
            return self.kernel.submit(self.kernel.execute(f"sql --limit 100000 {line}" if sql else line))

        return fetch

    def warm(self) -> None:
        """Start fetching the slow lists now, so the first TAB finds them."""
        for cached in (self._schema, self._functions, self._threads):
            cached.get(wait=0)

    def invalidate(self) -> None:
        """Something may have changed (a command ran): refresh slow lists on next use."""
        self._schema.invalidate()
        self._threads.invalidate()

    def values(self, source: str) -> list[tuple[str, str]]:
        """A COMPLETION_SOURCE's values (tobio/hooks.py: the kernel's own and those modules add); threads
        are kept here, fetched in the background, because listing them is a query."""
        if source == "thread":
            return list(self._threads.get())
        found = self.kernel.hooks.lookup(COMPLETION_SOURCE, source)
        return found(self.kernel) if found is not None else []

    def sql_schema(self) -> dict[str, list[tuple[str, str]]]:
        schema: dict[str, list[tuple[str, str]]] = self._schema.get()
        return schema

    def sql_functions(self) -> list[tuple[str, str]]:
        functions: list[tuple[str, str]] = self._functions.get()
        return functions
