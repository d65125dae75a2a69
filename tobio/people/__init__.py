"""Per-person memory: what an agent knows about each interlocutor, and its reflections on them.

Like Letta's "human" block: name, facts they told it, relationship and feelings, kept per
(agent, person), versioned in the database and shown only in conversations with that person.
"""
