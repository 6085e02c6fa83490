"""The system check of the server's limits (issue 19: a bad value must not pass silently)."""

from __future__ import annotations

import pytest
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


def test_gc_thresholds_must_be_three_whole_numbers_or_none():
    for bad in [(700, 10), (700, 10, "10"), (700, -1, 10), 700, (True, 10, 10)]:
        with override_settings(LIVEDATA={"HTTP_GC_THRESHOLDS": bad}):
            [error] = server_limits()
        assert error.id == "livedata.E005" and "HTTP_GC_THRESHOLDS" in error.msg
    for good in [None, (10_000, 10, 10), [700, 10, 10]]:
        with override_settings(LIVEDATA={"HTTP_GC_THRESHOLDS": good}):
            assert server_limits() == []


def test_start_up_freezes_and_sets_the_gc_thresholds():
    import gc

    from livedata.server.app import _freeze_startup_objects

    before = gc.get_threshold()
    try:
        _freeze_startup_objects((12_345, 11, 12))
        assert gc.get_threshold() == (12_345, 11, 12)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_path_prefix_must_be_a_path():
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from livedata.server.checks import path_prefix

    for good in ["", "/live", "/live/", "/a/b-c_d.e", "/"]:
        with override_settings(LIVEDATA={"DDP_PATH_PREFIX": good}):
            assert path_prefix() == [], good
    for bad in ["live", "/live?x=1", "/li ve", "/a//b", "/../x", "/%2e", "/live#", None, 5]:
        with override_settings(LIVEDATA={"DDP_PATH_PREFIX": bad}):
            [error] = path_prefix()
        assert error.id == "livedata.E009" and repr(bad) in error.msg, bad
    # registered: `check` (and every command that runs the checks) stops on it
    with override_settings(LIVEDATA={"DDP_PATH_PREFIX": "live"}), pytest.raises(SystemCheckError):
        call_command("check")
