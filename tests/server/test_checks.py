"""The system check of the server's limits (issue 19: a bad value must not pass silently)."""

from __future__ import annotations

from django.test import override_settings

from livedata.server.checks import server_limits


def test_limits_must_be_numbers_zero_or_more():
    assert server_limits() == []
    with override_settings(LIVEDATA={"HTTP_HEADER_TIMEOUT": -1, "DDP_CONNECT_TIMEOUT": "10"}):
        errors = server_limits()
    assert [e.id for e in errors] == ["livedata.E005", "livedata.E005"]
    assert "HTTP_HEADER_TIMEOUT" in errors[0].msg and "DDP_CONNECT_TIMEOUT" in errors[1].msg
    with override_settings(LIVEDATA={"HTTP_MAX_CONNECTIONS_PER_ADDRESS": 0}):
        assert server_limits() == []  # 0: no cap
