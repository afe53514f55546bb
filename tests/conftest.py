"""Suite-wide rules: PostgreSQL-only tests, a clean cache per test, common fixtures.

`make test` runs the suite on SQLite; with HELIOS_TEST_DATABASE_URL set it runs the tests that use
the database again with DATABASE_URL pointing there (the PostgreSQL pass). A test marked `postgres`
runs only in that pass: without the URL it is skipped, or fails when HELIOS_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os

import pytest
from django.core.cache import cache
from django.db import connection


def _database_is_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    postgres_pass_follows = bool(os.environ.get("HELIOS_TEST_DATABASE_URL")) and not _database_is_postgres()
    required = os.environ.get("HELIOS_REQUIRE_POSTGRES") == "1"
    kept, deselected = [], []
    for item in items:
        if item.get_closest_marker("postgres") is None or _database_is_postgres():
            kept.append(item)
        elif postgres_pass_follows:
            deselected.append(item)  # it runs in the PostgreSQL pass
        elif required:
            item.add_marker(pytest.mark.usefixtures("_postgres_missing"))
            kept.append(item)
        else:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set HELIOS_TEST_DATABASE_URL"))
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture
def _postgres_missing() -> None:
    pytest.fail("HELIOS_REQUIRE_POSTGRES=1 but this run has no PostgreSQL: set HELIOS_TEST_DATABASE_URL")


@pytest.fixture(autouse=True)
def _fast_bcrypt(settings: pytest.FixtureRequest) -> None:
    settings.PASSWORD_HASHERS = ["tests.hashers.FastBCryptSHA256PasswordHasher"]


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Throttle counters live in the cache: no test inherits another's."""
    cache.clear()


@pytest.fixture
def database_vendor() -> str:
    return connection.vendor


# -- Gateway (issue 7): one real runatlas for the in-process tests that need ATLAS.


@pytest.fixture(scope="session")
def atlas_server(tmp_path_factory: pytest.TempPathFactory):
    """A runatlas process shared by the session's in-process gateway tests: its port."""
    from tests.e2e.atlas_processes import running_atlas

    with running_atlas(tmp_path_factory.mktemp("atlas-session")) as (port, _process):
        yield port


@pytest.fixture
def atlas_url(atlas_server: int, monkeypatch: pytest.MonkeyPatch):
    """This process's HELIOS_ATLAS_URL pointing at the session's ATLAS, emptied (FLUSHALL), with the
    gateway's cached settings and clients forgotten before and after."""
    import redis

    from tests.gateway import reset_gateway_caches

    url = f"redis://127.0.0.1:{atlas_server}/0"
    monkeypatch.setenv("HELIOS_ATLAS_URL", url)
    reset_gateway_caches()
    redis.Redis(port=atlas_server, protocol=2).flushall()
    yield url
    monkeypatch.delenv("HELIOS_ATLAS_URL")
    reset_gateway_caches()
