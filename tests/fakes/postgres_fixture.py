"""``pg_url``: a throwaway PostgreSQL database per test session on 127.0.0.1:5432 (trust auth);
``empty_pg_url``: one per test, for tests that need a database no migration has touched yet.

Creates ``faaspub_t_<random>`` through the ``test`` database and drops it afterwards. Without a
reachable server the tests that need it are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

ADMIN_URL = os.environ.get("FAASPUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def throwaway_database(prefix: str) -> Iterator[str]:
    """Create a new, empty database, yield its URL, drop it (skip, or fail under CI, if unreachable)."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL is not reachable at {ADMIN_URL}: {exc.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    yield from throwaway_database("faaspub_t")


@pytest.fixture()
def empty_pg_url() -> Iterator[str]:
    """A database of its own for one test, with no tables yet (for migrations)."""
    yield from throwaway_database("faaspub_e")
