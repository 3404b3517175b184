from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.fake_registry import FakeRegistry


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    """A schema registry on 127.0.0.1:<free port>, empty, BACKWARD compatibility."""
    registry = FakeRegistry().start()
    try:
        yield registry
    finally:
        registry.stop()
