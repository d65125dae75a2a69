"""Where Tobio keeps its files: the user data dir (platformdirs) and config discovery."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "tobio"


def data_dir() -> Path:
    """The user data dir; `TOBIO_DATA_DIR` overrides it (tests point it at a temp dir)."""
    override = os.environ.get("TOBIO_DATA_DIR")
    if override:
        path = Path(override)
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_database_url() -> str:
    """DuckDB file in the user data dir: the default when the config names no database."""
    return f"duckdb:///{data_dir() / 'tobio.duckdb'}"


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The kernel config to use: `--config`, then `TOBIO_CONFIG`, then ./configs/kernel.yaml.

    Returns None when nothing is found; the kernel then runs on built-in defaults.
    """
    for candidate in (explicit, os.environ.get("TOBIO_CONFIG")):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_dir():
                path = path / "kernel.yaml"
            return path
    local = Path.cwd() / "configs" / "kernel.yaml"
    return local if local.exists() else None
