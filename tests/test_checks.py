"""livedata's own system checks."""

from __future__ import annotations

import pytest

from livedata.checks import database_wait_valid


@pytest.mark.parametrize("wait", [-1, "5", None, True])
def test_a_bad_database_wait_is_an_error(settings, wait) -> None:
    settings.LIVEDATA = {**settings.LIVEDATA, "DDP_DATABASE_WAIT": wait}
    [error] = database_wait_valid()
    assert error.id == "livedata.E002" and "DDP_DATABASE_WAIT" in error.msg


@pytest.mark.parametrize("wait", [0, 5, 2.5])
def test_a_number_of_seconds_is_fine(settings, wait) -> None:
    settings.LIVEDATA = {**settings.LIVEDATA, "DDP_DATABASE_WAIT": wait}
    assert database_wait_valid() == []
