from collections.abc import Iterator

import pytest

from corral.observability import TelemetryConfig

from .helpers import Captured, build


@pytest.fixture
def captured() -> Iterator[Captured]:
    result = build(TelemetryConfig())
    yield result
    result.telemetry.shutdown()


@pytest.fixture
def capturing_content() -> Iterator[Captured]:
    result = build(TelemetryConfig(capture_content=True, max_content_chars=32))
    yield result
    result.telemetry.shutdown()
