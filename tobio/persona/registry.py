"""Persona curation: every version of every persona, who changed what and when.

Personas start life as files (configs/personas/NAME.yaml) or imported cards. Each distinct content is
a row in `persona_versions`; `persona set` adds one, and so does editing the file (noticed when an
agent using it next spawns). Persona agents read the newest version before each turn, so a change
shows up in the next reply without a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from tobio.config.jsondata import depth
from tobio.config.limits import MAX_DEPTH
from tobio.db.literals import const
from tobio.db.migrations import create_tables, utcnow
from tobio.db.tables import Row, versions_table
from tobio.errors import CommandError
from tobio.persona.schema import Persona, load_persona

if TYPE_CHECKING:
    from tobio.kernel import Kernel


# One version of a persona: its whole content, and who made the change.
PersonaVersionRow = versions_table("persona_versions", "persona")  # key: file stem or import name


def m001_persona_versions(conn: Connection) -> None:
    create_tables(conn, [PersonaVersionRow])


MIGRATIONS = [m001_persona_versions]


def key_for(path: str | Path) -> str:
    return Path(path).stem


def _dump(persona: Persona) -> dict[str, Any]:
    return persona.model_dump(mode="json")


def field_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


class PersonaRegistry:
    """The current persona per key, cached in memory, every version in the database."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.current: dict[str, tuple[int, Persona]] = {}  # key -> (version, persona)

    async def setup(self) -> None:
        from tobio.db.migrations import migrate

        def setup(conn: Connection) -> dict[str, tuple[int, dict[str, Any]]]:
            migrate(conn, MIGRATIONS, prefix="persona.")
            self.kernel.db.track_ids(conn, "persona_versions")
            latest = sa.select(PersonaVersionRow.c.persona, sa.func.max(PersonaVersionRow.c.version).label("v")).group_by(
                PersonaVersionRow.c.persona).subquery()
            rows = conn.execute(sa.select(PersonaVersionRow.c.persona, PersonaVersionRow.c.version, PersonaVersionRow.c.data).join(
                latest, sa.and_(latest.c.persona == PersonaVersionRow.c.persona, latest.c.v == PersonaVersionRow.c.version)))
            return {key: (version, data) for key, version, data in rows}

        for key, (version, data) in (await self.kernel.db.call(setup)).items():
            self.current[key] = (version, Persona.model_validate(data))

    async def record(self, key: str, persona: Persona, changed_by: str, change: str, source: str | None = None) -> int:
        """Store `persona` as the next version of `key` (if it differs from the current one)."""
        version, current = self.current.get(key, (0, None))
        if current is not None and _dump(current) == _dump(persona):
            return version
        row = dict(id=self.kernel.db.next_ids("persona_versions"), persona=key, version=version + 1, data=_dump(persona),
                   changed_by=changed_by, change=change, source=source, created_at=utcnow())
        self.current[key] = (version + 1, persona)
        await self.kernel.writer.write(("persona_versions", tuple(row), [tuple(row.values())]))
        return version + 1

    async def from_file(self, path: str | Path, on_disk: Persona | None = None) -> tuple[str, Persona]:
        """The persona an agent file names: the newest version, recording the file's content when it is new.
        `on_disk` is the file as the caller just read it (an agent reads it when made): not parsed twice."""
        key = key_for(path)
        if on_disk is None:
            on_disk = load_persona(path)
        recorded = await self._versions_from_file(key)
        if key not in self.current:
            await self.record(key, on_disk, "file", f"loaded from {path}", str(path))
        elif recorded is None or recorded != _dump(on_disk):
            # The file changed since we last read it: that edit is a version too.
            before = _dump(self.current[key][1])
            changed = ", ".join(k for k, _, _ in field_diff(before, _dump(on_disk))) or "nothing"
            await self.record(key, on_disk, "file", f"file edited ({changed})", str(path))
        return key, self.current[key][1]

    async def _versions_from_file(self, key: str) -> dict[str, Any] | None:
        def read(conn: Connection) -> dict[str, Any] | None:
            return conn.execute(
                sa.select(PersonaVersionRow.c.data).where(PersonaVersionRow.c.persona == const(key), PersonaVersionRow.c.changed_by == const("file"))
                .order_by(PersonaVersionRow.c.version.desc()).limit(const(1))).scalar()

        await self.kernel.flush()
        return await self.kernel.db.call(read)

    def get(self, key: str) -> tuple[int, Persona]:
        if key not in self.current:
            raise CommandError(f"no persona '{key}' (see `persona ls`)")
        return self.current[key]

    async def set_field(self, key: str, field: str, value: str, changed_by: str) -> tuple[int, Persona]:
        """Change one field; the value is JSON when it parses as JSON (lists, numbers), else text."""
        _, persona = self.get(key)
        if field not in Persona.model_fields or field == "card":
            raise CommandError(f"no persona field '{field}' (fields: {', '.join(f for f in Persona.model_fields if f != 'card')})")
        try:  # NaN, Infinity and 1e999 are text here, never a number that breaks comparisons later
            parsed: Any = json.loads(value, parse_constant=_not_a_number, parse_float=_finite)
        except ValueError:
            parsed = value
        except RecursionError:
            raise CommandError(f"persona {key}: field '{field}': nested more than {MAX_DEPTH} levels deep") from None
        if depth(parsed) > MAX_DEPTH:
            raise CommandError(f"persona {key}: field '{field}': nested more than {MAX_DEPTH} levels deep")
        annotation = Persona.model_fields[field].annotation
        if annotation is str:
            parsed = value
        elif getattr(annotation, "__origin__", None) is list and not isinstance(parsed, list):
            parsed = [part.strip() for part in value.strip().strip("[]").split(",") if part.strip()]  # a, b, c
        try:
            updated = Persona.model_validate({**_dump(persona), field: parsed})
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]
            shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
            raise CommandError(f"persona {key}: field '{field}': {problem['msg']} (got {shown})") from None
        version = await self.record(key, updated, changed_by, f"set {field}")
        return version, updated

    async def versions(self, key: str) -> list[Row]:
        def read(conn: Connection) -> list[Row]:
            return list(conn.execute(sa.select(PersonaVersionRow).where(PersonaVersionRow.c.persona == key)
                                     .order_by(PersonaVersionRow.c.version)))

        await self.kernel.flush()
        return await self.kernel.db.call(read)


def _not_a_number(literal: str) -> Any:
    raise ValueError(literal)


def _finite(literal: str) -> float:
    number = float(literal)
    if number in (float("inf"), float("-inf")):
        raise ValueError(literal)
    return number
