"""Errors that front ends show as one clear line (no traceback unless asked for)."""

from __future__ import annotations


class TobioError(Exception):
    """Base class: the message is meant for the user, as is."""


class ConfigError(TobioError):
    """A configuration file is malformed or fails validation; the message names file, line and field."""


class CommandError(TobioError):
    """A command line could not be parsed or run; `usage` is printed under the message."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class ModuleError(TobioError):
    """A module could not be loaded or unloaded (missing dependency, cycle, still needed)."""


class DatabaseError(TobioError):
    """The database could not be opened or a statement failed."""


class DatabaseLockedError(DatabaseError):
    """The DuckDB file is held read-write by another process."""


class AgentError(TobioError):
    """An agent could not be spawned, found or controlled."""


class ProviderSetupError(TobioError):
    """A provider or model could not be set up (missing package, file, or bad settings)."""
