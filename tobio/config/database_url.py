"""Checking a database URL before anything connects, so a typo is one line, not a driver traceback."""

from __future__ import annotations

import os
from pathlib import Path

from tobio.errors import ConfigError

_FILE_DIALECTS = ("duckdb", "sqlite")


def check_database_url(url: str, source: str = "database") -> str:
    """`url` itself when SQLAlchemy can use it; else a ConfigError naming `source` (not the URL: it may hold a password)."""
    import sqlalchemy as sa

    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise ConfigError(f"{source}: empty database URL (e.g. duckdb:///path/tobio.duckdb)")
    try:
        parsed = sa.engine.make_url(text)
        if parsed.drivername == "duckdb":  # served by Tobio's own dialect (tobio/db/duckdb_dialect.py)
            from tobio.db.duckdb_dialect import tobio_url

            dialect = tobio_url(parsed).get_dialect()
        else:
            dialect = parsed.get_dialect()
    except sa.exc.NoSuchModuleError:
        raise ConfigError(f"{source}: unknown database kind in the URL (use duckdb://, sqlite:// or postgresql://)") from None
    except (sa.exc.ArgumentError, ValueError, TypeError):
        raise ConfigError(f"{source}: not a database URL (expected e.g. duckdb:///path/tobio.duckdb)") from None
    except ImportError as exc:
        raise ConfigError(f"{source}: the driver for this database is not installed ({exc.name or exc})") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ConfigError(f"{source}: the driver for {parsed.get_backend_name()} is not installed ({exc.name or exc})") from None
    except Exception:  # a dialect without a module-level driver is fine here
        pass
    if parsed.get_backend_name() in _FILE_DIALECTS and parsed.database and parsed.database != ":memory:":
        _check_file_place(Path(parsed.database).expanduser(), source)
    return text


def _check_file_place(path: Path, source: str) -> None:
    """The file's folder exists, or is one new folder inside a writable one; a typo never makes a tree of folders."""
    folder = path.parent
    if folder.is_dir():
        if path.is_dir():
            raise ConfigError(f"{source}: {path} is a folder, not a database file")
        return
    if folder.exists():
        raise ConfigError(f"{source}: cannot create the database file {path} ({folder} is not a folder)")
    if not folder.parent.is_dir():
        raise ConfigError(f"{source}: the folder {folder.parent} does not exist (create it, or fix the database URL)")
    if not os.access(folder.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{source}: cannot create the folder {folder} (no write permission in {folder.parent})")
