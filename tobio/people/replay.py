"""The people module's part of `agent replay`: what the agent believed about each person at time T,
and what it knew had been true before and changed (retracted facts are in neither after their retraction)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tobio.people import store

if TYPE_CHECKING:
    from tobio.hooks import ReplayStep
    from tobio.kernel import Kernel
    from tobio.people.service import People
    from tobio.replay import Snapshot


def make_replay_hook(kernel: Kernel, people: People) -> ReplayStep:
    async def hook(snapshot: Snapshot) -> None:
        await people.flush()
        snapshot.extra["people"] = await kernel.db.call(store.facts_at, snapshot.agent_id, snapshot.at)
        snapshot.extra["people_past"] = await kernel.db.call(store.past_at, snapshot.agent_id, snapshot.at)
        thoughts = await kernel.db.call(store.reflections_at, snapshot.agent_id, snapshot.at)
        snapshot.extra["reflections"] = [f"{who or '-'}: {text}" for who, text in thoughts]

    return hook
