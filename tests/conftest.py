"""Shared fixtures: an isolated data dir, no third-party plugins, and a database URL per backend.

PostgreSQL runs when TOBIO_TEST_POSTGRES_URL points at a server (.ci/run starts one); with
TOBIO_REQUIRE_POSTGRES=1 a missing server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tobio.config.schema import KernelConfig
from tobio.kernel import Kernel

BACKENDS = ["duckdb", "sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOBIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TOBIO_LOAD_PLUGINS", "")
    monkeypatch.delenv("TOBIO_CONFIG", raising=False)
    monkeypatch.delenv("TOBIO_DATABASE", raising=False)


def _postgres_url() -> str:
    url = os.environ.get("TOBIO_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("TOBIO_REQUIRE_POSTGRES") == "1":
            pytest.fail("TOBIO_REQUIRE_POSTGRES=1 but TOBIO_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server (set TOBIO_TEST_POSTGRES_URL)")
    return url


def _fresh_postgres(url: str) -> Iterator[str]:
    """A new schema-free database per test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"tobio_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for each backend the database layer must support."""
    backend = request.param
    if backend == "duckdb":
        yield f"duckdb:///{tmp_path / 'tobio.duckdb'}"
    elif backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tobio.sqlite'}"
    else:
        yield from _fresh_postgres(_postgres_url())


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'tobio.duckdb'}"


def make_kernel(url: str, **config: object) -> Kernel:
    """A started kernel on `url` with the scripted module and the given config fields."""
    settings = {"modules": ["scripted"], **config}
    return Kernel(KernelConfig(**settings), database=url).start()


@pytest.fixture
def kernel(db_url: str) -> Iterator[Kernel]:
    k = make_kernel(db_url)
    try:
        yield k
    finally:
        k.close()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
