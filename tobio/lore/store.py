"""Lorebooks in the database: every version of every book, and which agents and channels they are attached to.

A book is stored exactly as imported (a SillyTavern World Info object, or a card-style book), so an
export gives the same JSON back; `lore import` of changed content adds a version, like personas.
A persona's own `character_book` is not stored here: it is read from the persona (`card:KEY`).
Imported files are hostile data: size and nesting are capped, names become slugs, nothing is expanded.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import DateTime, String
from sqlalchemy.engine import Connection

from tobio.config.jsondata import loads
from tobio.db.migrations import create_tables, utcnow
from tobio.db.tables import Row, column, id_column, table, versions_table
from tobio.errors import CommandError, ConfigError
from tobio.paths import slug

if TYPE_CHECKING:
    from tobio.kernel import Kernel
    from tobio.lore.schema import Book

MAX_BOOK_BYTES = 8 * 1024 * 1024
MAX_BOOK_DEPTH = 32

LoreVersionRow = versions_table("lore_versions", "book")

# A book attached to an agent (its world) or a channel (a shared world for a scene); detached rows stay.
LoreAttachRow = table(
    "lore_attachments",
    id_column(),
    column("book", String(64), index=True),
    column("kind", String(16)),  # agent | channel
    column("target", String(64)),
    column("attached_at", DateTime()),
    column("detached_at", DateTime(), null=True),
)


def m001_lore(conn: Connection) -> None:
    create_tables(conn, [LoreVersionRow, LoreAttachRow])


MIGRATIONS = [m001_lore]


def read_world_file(path: str | Path) -> dict[str, Any]:
    """A World Info JSON file (SillyTavern's `{"entries": {...}}`, a card-style `character_book`, or a card
    .json/.png whose book is taken), capped."""
    file = Path(path).expanduser()
    try:
        size = file.stat().st_size
        if size > MAX_BOOK_BYTES:
            raise ConfigError(f"{file}: {size} bytes; a lorebook may have at most {MAX_BOOK_BYTES}")
        with file.open("rb") as handle:
            blob = handle.read(MAX_BOOK_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
    if len(blob) > MAX_BOOK_BYTES:
        raise ConfigError(f"{file}: larger than {MAX_BOOK_BYTES} bytes")
    if blob.startswith(b"\x89PNG"):  # a card PNG: its embedded book, read by the card reader's own caps
        from tobio.config.cardfile import read_card

        data: Any = read_card(file)
    else:
        try:
            text = blob.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(f"{file}: not UTF-8 text") from None
        data = loads(text, str(file), limit=MAX_BOOK_DEPTH)
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "character_book" in data["data"]:
        data = data["data"]["character_book"]  # a whole card: take its book
    elif isinstance(data, dict) and isinstance(data.get("character_book"), dict):
        data = data["character_book"]
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: a lorebook is a JSON object with `entries`")
    from tobio.lore.schema import parse_book  # here: a start that reads no book does not import the schema

    parse_book(file.stem, data)  # validates the shape
    return data


class LoreStore:
    """Current version per book (cached) and attachments, every version in the database."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.current: dict[str, tuple[int, dict[str, Any]]] = {}
        self.attached: list[tuple[str, str, str]] = []  # (book, kind, target), attach order
        self._parsed: dict[tuple[str, int], Book] = {}

    async def setup(self) -> None:
        from tobio.db.migrations import migrate

        def setup(conn: Connection) -> tuple[list[Row], list[Row]]:
            migrate(conn, MIGRATIONS, prefix="lore.")
            self.kernel.db.track_ids(conn, "lore_versions")
            self.kernel.db.track_ids(conn, "lore_attachments")
            versions = list(conn.execute(sa.select(LoreVersionRow.c.book, LoreVersionRow.c.version, LoreVersionRow.c.data)
                                         .order_by(LoreVersionRow.c.version)))
            attached = list(conn.execute(sa.select(LoreAttachRow).where(LoreAttachRow.c.detached_at.is_(None))
                                         .order_by(LoreAttachRow.c.id)))
            return versions, attached

        versions, attached = await self.kernel.db.call(setup)
        for book, version, data in versions:
            self.current[book] = (version, data)
        self.attached = [(a.book, a.kind, a.target) for a in attached]

    def book(self, key: str) -> Book:
        version, data = self.get(key)
        parsed = self._parsed.get((key, version))
        if parsed is None:
            from tobio.lore.schema import parse_book

            parsed = self._parsed[(key, version)] = parse_book(key, data)
        return parsed

    def get(self, key: str) -> tuple[int, dict[str, Any]]:
        if key not in self.current:
            raise CommandError(f"no lorebook '{key}' (see `lore ls`)")
        return self.current[key]

    async def record(self, key: str, data: dict[str, Any], changed_by: str, change: str, source: str | None = None) -> int:
        """Store `data` as the next version of book `key`, unless it equals the current one."""
        key = slug(key, fallback="lorebook")
        version, current = self.current.get(key, (0, None))
        if current is not None and json.dumps(current, sort_keys=True) == json.dumps(data, sort_keys=True):
            return version
        row = dict(id=self.kernel.db.next_ids("lore_versions"), book=key, version=version + 1, data=copy.deepcopy(data),
                   changed_by=changed_by, change=change, source=source, created_at=utcnow())
        self.current[key] = (version + 1, copy.deepcopy(data))
        await self.kernel.writer.write(("lore_versions", tuple(row), [tuple(row.values())]))
        return version + 1

    async def versions(self, key: str) -> list[Row]:
        await self.kernel.flush()
        return await self.kernel.db.call(lambda conn: list(conn.execute(
            sa.select(LoreVersionRow).where(LoreVersionRow.c.book == key).order_by(LoreVersionRow.c.version))))

    async def attach(self, key: str, kind: str, target: str) -> bool:
        self.get(key)
        if (key, kind, target) in self.attached:
            return False
        row = dict(id=self.kernel.db.next_ids("lore_attachments"), book=key, kind=kind, target=target,
                   attached_at=utcnow(), detached_at=None)
        self.attached.append((key, kind, target))
        await self.kernel.writer.write(("lore_attachments", tuple(row), [tuple(row.values())]))
        return True

    async def detach(self, key: str, kind: str, target: str) -> bool:
        if (key, kind, target) not in self.attached:
            return False
        self.attached.remove((key, kind, target))
        await self.kernel.flush()

        def update(conn: Connection) -> None:
            conn.execute(sa.update(LoreAttachRow).where(
                LoreAttachRow.c.book == key, LoreAttachRow.c.kind == kind, LoreAttachRow.c.target == target,
                LoreAttachRow.c.detached_at.is_(None)).values(detached_at=utcnow()))

        await self.kernel.db.call(update)
        return True

    def books_for(self, agent: str, channel: str | None) -> tuple[list[str], list[str]]:
        """(channel books, agent books) attached now, in attach order."""
        by_channel = [b for b, kind, target in self.attached if kind == "channel" and target == channel and b in self.current]
        by_agent = [b for b, kind, target in self.attached if kind == "agent" and target == agent and b in self.current]
        return by_channel, by_agent
