"""livedata's settings: renamed names still work (warned, checked), the cache follows
``setting_changed``.

# rename_settings: skip-file (this file uses the old names on purpose)
"""

from __future__ import annotations

import re
import warnings
from dataclasses import fields
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from livedata import conf
from livedata.checks import deprecated_names
from livedata.conf import (
    DEPRECATED,
    LivedataDeprecationWarning,
    LivedataSettings,
    livedata_settings,
)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch) -> None:
    """Each test sees the once-per-name warnings as a new process would."""
    monkeypatch.setattr(conf, "_warned", set())


def test_every_new_name_is_a_setting_and_no_old_one_is() -> None:
    names = {f.name for f in fields(LivedataSettings)}
    assert set(DEPRECATED.values()) <= names
    assert not set(DEPRECATED) & names


def test_an_old_name_is_applied_to_the_new_one_with_a_warning_and_a_check() -> None:
    with override_settings(LIVEDATA={"BATCH_SIZE": 7}):
        with pytest.warns(LivedataDeprecationWarning, match="'BATCH_SIZE'.*'LISTENER_BATCH_SIZE'"):
            assert livedata_settings().LISTENER_BATCH_SIZE == 7
        [warning] = deprecated_names()
        assert warning.id == "livedata.W004"
        assert "'BATCH_SIZE'" in warning.msg and "'LISTENER_BATCH_SIZE'" in warning.msg
    assert livedata_settings().LISTENER_BATCH_SIZE == LivedataSettings.LISTENER_BATCH_SIZE
    assert deprecated_names() == []


def test_the_warning_is_given_once_per_name() -> None:
    with override_settings(LIVEDATA={"BATCH_SIZE": 7, "METHOD_THREADS": 3}):
        with pytest.warns(LivedataDeprecationWarning) as record:
            livedata_settings()
        assert sorted(str(w.message).split("'")[1] for w in record) == [
            "BATCH_SIZE",
            "METHOD_THREADS",
        ]
    with override_settings(LIVEDATA={"BATCH_SIZE": 8, "METHOD_THREADS": 4}):
        with warnings.catch_warnings():
            warnings.simplefilter("error", LivedataDeprecationWarning)
            conf_now = livedata_settings()
        assert (conf_now.LISTENER_BATCH_SIZE, conf_now.DDP_METHOD_THREADS) == (8, 4)


def test_an_old_name_read_as_an_attribute_gives_the_new_value() -> None:
    with pytest.warns(LivedataDeprecationWarning, match="'WEBHOOKS_IN_SERVE'"):
        assert LivedataSettings(WEBHOOK_IN_SERVE=False).WEBHOOKS_IN_SERVE is False
    with pytest.raises(AttributeError):
        LivedataSettings().NO_SUCH_SETTING  # noqa: B018


def test_an_old_name_and_its_new_name_together_are_an_error() -> None:
    given = {"SOCKJS_JSONP": True, "DDP_SOCKJS_JSONP": False}
    with override_settings(LIVEDATA=given), pytest.raises(ImproperlyConfigured) as caught:
        livedata_settings()
    assert "'SOCKJS_JSONP'" in str(caught.value) and "'DDP_SOCKJS_JSONP'" in str(caught.value)


def test_unknown_names_are_still_an_error() -> None:
    with override_settings(LIVEDATA={"NO_SUCH_SETTING": 1}), pytest.raises(ImproperlyConfigured):
        livedata_settings()


def test_the_settings_are_built_once_and_rebuilt_when_livedata_changes() -> None:
    before = livedata_settings()
    assert livedata_settings() is before
    with override_settings(LIVEDATA={**settings.LIVEDATA, "PULL_PAGE_SIZE": 3}):
        assert livedata_settings().PULL_PAGE_SIZE == 3
        assert livedata_settings() is livedata_settings()
    assert livedata_settings().PULL_PAGE_SIZE == before.PULL_PAGE_SIZE
    current = livedata_settings()
    with override_settings(USE_TZ=True):  # another setting: the cache stays
        assert livedata_settings() is current


def test_pytest_django_settings_fixture_clears_it_too(settings) -> None:
    settings.LIVEDATA = {**settings.LIVEDATA, "PULL_PAGE_SIZE": 4}
    assert livedata_settings().PULL_PAGE_SIZE == 4


def readme_settings_table() -> list[list[str]]:
    """The first cells of the README's Settings table (its section, up to the next heading)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1]) for row in rows]


def test_the_readme_settings_table_lists_every_setting_and_only_settings() -> None:
    named = {name for cell in readme_settings_table() for name in cell}
    settings_fields = {f.name for f in fields(LivedataSettings)}
    assert sorted(settings_fields - named) == [], "settings the README's table does not list"
    assert sorted(named - settings_fields) == [], "README rows naming no setting"
