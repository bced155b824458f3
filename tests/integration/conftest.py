"""Fixtures of the in-process integration tests."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from autional_sessions.observability.log_format import ACCESS_LOGGER, JsonFormatter


@pytest.fixture
def access_log() -> Iterator[io.StringIO]:
    """The access log's JSON lines written during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
