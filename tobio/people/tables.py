"""The people module's tables: one row per version of a fact, and one per reflection.

Append-only like the rest of an agent's record: an edit supersedes the old row (superseded_at) rather
than overwriting it, so `agent replay` can show what the agent believed about someone at time T.
Two clocks per fact: when the agent believed it (created_at .. superseded_at) and when it was true in the
person's life (valid_from .. valid_to: "I moved to Paris" ends "lives in Berlin"). A fact the person said
was wrong is retracted (retracted_at, and the message that retracted it), never deleted: it was never true.
"""

from __future__ import annotations

from sqlalchemy import DateTime, Float, Index, String, Text

from tobio.db.tables import Id, column, id_column, table

# One version of one fact an agent holds about a person (key: name, dog, home, job, likes, relationship, feeling…).
PersonFactRow = table(
    "people_facts",
    id_column(),
    column("agent_id", Id),
    column("person", String(64)),  # the interlocutor's agent name (a user at a front end, or another agent)
    column("key", String(64)),
    column("value", Text),
    column("source", String(16)),  # rule | model | command | derived
    column("message_id", Id, null=True),  # the message it was learnt from
    column("created_at", DateTime()),
    column("superseded_at", DateTime(), null=True),
    # added by people.m002_fact_windows (nullable, as ALTER TABLE adds them):
    column("valid_from", DateTime(), null=True),  # when it became true (the message's time)
    column("valid_to", DateTime(), null=True),  # when it stopped being true (a later contradicting fact)
    column("confidence", Float, null=True),  # how sure the agent is, 0..1 (by how it was learnt)
    column("retracted_at", DateTime(), null=True),  # the person said it was wrong: never true, never shown again
    column("retracted_by", Id, null=True),  # the message that retracted it (None: a command)
    Index("ix_people_facts_agent_person", "agent_id", "person"),
)

# A short reflection (Park et al.) the agent wrote after talking with someone; superseded by the next batch.
ReflectionRow = table(
    "people_reflections",
    id_column(),
    column("agent_id", Id, index=True),
    column("person", String(64), null=True),
    column("content", Text),
    column("upto_message_id", Id, null=True),  # the newest message it reflected on
    column("created_at", DateTime()),
    column("superseded_at", DateTime(), null=True),
)

TABLES = ("people_facts", "people_reflections")
