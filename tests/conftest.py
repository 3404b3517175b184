"""Shared fixtures. Integration tests share ONE embedded Tansu broker per session and stay apart by
unique names: ask ``unique_name`` for every topic, app id and group id.

Any test that uses ``kafka_broker`` (directly or through another fixture) is marked ``kafka``
automatically, so ``pytest -m "not kafka"`` runs the pure tiers only.
"""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from leadflow.broker import EmbeddedBroker, signal_group
from streams.topics import Topics, ensure_topics
from tests.kafka_helpers import consume_all, produce  # noqa: F401  (re-exported for tests)
from tests.sinks.sample_records import PG_BASE

if TYPE_CHECKING:
    from tests.deploy.fake_registry import FakeRegistry

_KAFKA_FIXTURES = {"kafka_broker", "private_broker", "bootstrap", "kafka_topics"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests on the broker are marked ``kafka``, tests on PostgreSQL ``postgres``."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if _KAFKA_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.kafka)
        if "postgres_url" in fixtures:
            item.add_marker(pytest.mark.postgres)


# -- PostgreSQL ------------------------------------------------------------------------------------

def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_BASE, connect_timeout=2):
            return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_available()


@pytest.fixture
def postgres_url(pg_available: bool) -> Iterator[str]:
    """A libpq URL whose search_path is a fresh schema, dropped (CASCADE) after the test."""
    if not pg_available:
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (database test, user postgres)")
    import psycopg

    schema = f"lf_sink_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded Tansu broker for the whole session (in memory; ready in ~20 ms)."""
    broker = EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker for one test, so that it may be stopped (SIGSTOP: unreachable, state kept) without
    stopping anyone else's; woken (SIGCONT) before it is stopped for good."""
    broker = EmbeddedBroker(log_dir=tmp_path / "tansu").start()
    try:
        yield broker
    finally:
        signal_group(broker.pid, signal.SIGCONT)
        broker.stop()


@pytest.fixture
def bootstrap(kafka_broker: EmbeddedBroker) -> str:
    """``"127.0.0.1:PORT"`` of the session broker."""
    return kafka_broker.bootstrap


_counter = itertools.count(1)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: ``unique_name("orders")`` → ``"orders-test-foo-3-a1b2c3"``, unique per call.

    Legal as a Kafka topic name, faust app id and group id ([a-zA-Z0-9._-], short).
    """
    test = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name.removeprefix("test_"))[:40].strip("-")

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test}-{next(_counter)}-{uuid.uuid4().hex[:6]}"

    return make


@pytest.fixture
def kafka_topics(bootstrap: str, unique_name: Callable[..., str]) -> Callable[..., Topics]:
    """Factory: a ``Topics`` with a unique prefix (app id too), every topic created on the broker.

    ``kafka_topics(tables=("leads",), partitions=2)`` also creates the tables' compacted changelogs.
    """

    def make(**overrides: object) -> Topics:
        topics = Topics.prefixed(unique_name("lf"), **overrides)
        ensure_topics(bootstrap, topics)
        return topics

    return make


@pytest.fixture
def fake_registry() -> Iterator["FakeRegistry"]:
    """A schema registry on 127.0.0.1:<free port>, empty, BACKWARD compatibility: the one place
    that plays the registry's REST API (tests/deploy/fake_registry.py)."""
    from tests.deploy.fake_registry import FakeRegistry

    registry = FakeRegistry().start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Factory: ``tmpfs("2m")`` mounts a tmpfs of that size (``ro=True``: read-only) on a fresh
    directory under ``tmp_path`` and returns it; every mount is undone after the test. Needs root,
    as ``make test`` runs here: a small real filesystem is how a full disk is tested."""
    mounted: list[Path] = []

    def mount(size: str = "2m", *, ro: bool = False) -> Path:
        target = tmp_path / f"tmpfs-{len(mounted)}"
        target.mkdir()
        options = f"size={size}" + (",ro" if ro else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs on {target} (root needed): {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)
