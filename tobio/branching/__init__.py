"""Branching the record: an agent's whole mind as it stood at a moment, carried into a new agent (a fork),
and a scene with everyone in it (a channel branch). The past is shared by reference, never edited."""
