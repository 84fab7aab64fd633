"""Fixtures the ops service's integration tests share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.ops import Publisher


@pytest.fixture
def gateway(rig: Any) -> Iterator[Publisher]:
    """A gateway publishing to the broker of the test module's ``rig`` fixture (every module
    that uses this one defines ``rig``, with a ``broker``)."""
    with Publisher(rig.broker.url) as pub:
        yield pub
