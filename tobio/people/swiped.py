"""What a person's words taught an agent stops counting when those words leave its history (a swipe, an edit).

A fact learnt from a withdrawn message is superseded, and the version it had replaced is believed again
as a new version (append-only: both stay in `fact history`). A reply brought back by a swipe (always the
latest turn) is believed again: the newest version of each fact learnt from it is copied back as current.
People's per-person counts live in the agent's state, which the swipe restores for the replier.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tobio.db.migrations import utcnow
from tobio.hooks import SwipeObserver
from tobio.people import store
from tobio.people.store import Change, FactVersion
from tobio.people.tables import PersonFactRow
from tobio.swipes import store as swipes

if TYPE_CHECKING:
    from tobio.people.service import People
    from tobio.swipes.service import Swiped


def make_hook(people: People) -> SwipeObserver:
    async def follow(change: Swiped) -> None:
        if change.withdrawn:
            await unlearn(change)
        if change.restored:
            await relearn(change)

    async def relearn(change: Swiped) -> None:
        await people.flush()
        back = set(change.restored)
        at = utcnow()
        db = people.kernel.db
        for agent_id in change.agents:
            for person in await db.call(_taught_by, agent_id, list(back)):
                known = people.facts.setdefault(agent_id, {}).setdefault(person, {})
                history = await db.call(store.fact_history, agent_id, person)
                latest = {v.key: v for v in history if v.message_id in back and v.retracted_at is None}
                new = [replace(v, id=db.next_ids("people_facts"), created_at=at, superseded_at=None, valid_to=None)
                       for key, v in latest.items() if known.get(key) is None or known[key].value != v.value]
                if not new:
                    continue
                ended = [Change(known[v.key].id) for v in new if v.key in known]
                for version in new:
                    known[version.key] = version
                people._write(store.write_facts, [tuple(getattr(v, c) for c in store.FACT_COLUMNS) for v in new], ended, at)
        await people.flush()

    async def unlearn(change: Swiped) -> None:
        await people.flush()
        withdrawn = set(change.withdrawn)
        at = utcnow()
        db = people.kernel.db
        for agent_id in change.agents:
            for person, known in list(people.facts.get(agent_id, {}).items()):
                gone = [v for v in known.values() if v.message_id in withdrawn]
                if not gone:
                    continue
                history = await db.call(store.fact_history, agent_id, person)
                sources = [v.message_id for v in history if v.message_id is not None]
                out = withdrawn | await db.call(swipes.withdrawn_among, sources)
                new: list[FactVersion] = []
                for version in gone:
                    earlier = [v for v in history if v.key == version.key and v.id < version.id and v.retracted_at is None
                               and v.message_id not in out]
                    if earlier:
                        again = replace(earlier[-1], id=db.next_ids("people_facts"), created_at=at, superseded_at=None, valid_to=None)
                        known[version.key] = again
                        new.append(again)
                    else:
                        known.pop(version.key, None)
                rows = [tuple(getattr(v, c) for c in store.FACT_COLUMNS) for v in new]
                people._write(store.write_facts, rows, [Change(v.id) for v in gone], at)
        await people.flush()

    return follow


def _taught_by(conn: Any, agent_id: int, message_ids: list[int]) -> list[str]:
    """The people whom the agent learnt something about from these messages."""
    rows = PersonFactRow.c
    query = sa.select(sa.distinct(rows.person)).where(rows.agent_id == agent_id, rows.message_id.in_(message_ids))
    return list(conn.execute(query).scalars())
