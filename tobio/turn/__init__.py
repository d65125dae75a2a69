"""The turn: how an LLM agent answers one message, as stages every agent type and module reuses.

should-answer (SHOULD_ANSWER) -> history (HISTORY_SOURCE) -> prompt steps (PROMPT) -> generate (the model
bundle's provider) -> reply filters (the type's own, then REPLY_FILTER) -> post -> events (EVENT).
`agent.TurnAgent` runs them; an agent type is a configuration of it (persona agents, the example's
diarist). Modules contribute at the points in tobio/hooks.py and import from here, never from persona.
"""
