"""livedata's own system checks."""

from __future__ import annotations

import pytest

from livedata.checks import broker_url_valid, database_wait_valid


@pytest.mark.parametrize("wait", [-1, "5", None, True])
def test_a_bad_database_wait_is_an_error(settings, wait) -> None:
    settings.LIVEDATA = {**settings.LIVEDATA, "DDP_DATABASE_WAIT": wait}
    [error] = database_wait_valid()
    assert error.id == "livedata.E002" and "DDP_DATABASE_WAIT" in error.msg


@pytest.mark.parametrize("wait", [0, 5, 2.5])
def test_a_number_of_seconds_is_fine(settings, wait) -> None:
    settings.LIVEDATA = {**settings.LIVEDATA, "DDP_DATABASE_WAIT": wait}
    assert database_wait_valid() == []


@pytest.mark.parametrize(
    "url", ["nats://127.0.0.1:4222", "redis://", "redis://host:port", "127.0.0.1:6379", 6379]
)
def test_a_malformed_broker_url_is_an_error(settings, url) -> None:
    settings.LIVEDATA = {**settings.LIVEDATA, "LISTENER_BROKER_URL": url}
    [error] = broker_url_valid()
    assert error.id == "livedata.E006" and "LISTENER_BROKER_URL" in error.msg


@pytest.mark.parametrize(
    "url", ["", "redis://127.0.0.1:6379/0", "rediss://:secret@cache.internal", "unix:///r.sock"]
)
def test_no_broker_or_a_redis_url_is_fine(settings, url) -> None:
    settings.LIVEDATA = {**settings.LIVEDATA, "LISTENER_BROKER_URL": url}
    assert broker_url_valid() == []
