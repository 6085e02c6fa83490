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


# --- issue 16: silent failures become loud (the user's view: tests/test_fresh_project_checks)


def test_the_suite_and_the_demo_pass_every_new_check(transactional_db) -> None:
    from django.core import checks

    found = checks.run_checks(databases=["default"])
    assert [m for m in found if m.id and m.id.startswith("livedata.")] == []


def test_capture_in_migrations_names_the_model_and_the_commands() -> None:
    from livedata.capture.declare import CAPTURE_TRIGGERS
    from livedata.capture.readiness import MAKEMIGRATIONS, missing_from_migrations
    from tests.testapp.models import Note

    assert missing_from_migrations() == []  # every suite model's migration has them
    assert not hasattr(Note._meta, "triggers")
    Note._meta.triggers = list(CAPTURE_TRIGGERS)  # as if tracked since its migrations
    try:
        [missing] = missing_from_migrations([Note])
        assert missing.step == MAKEMIGRATIONS and len(missing.triggers) == 4
        assert missing.commands() == (
            "python manage.py makemigrations testapp && python manage.py migrate testapp"
        )
    finally:
        del Note._meta.triggers


def test_not_installed_says_reinstall_when_the_migration_is_applied(transactional_db) -> None:
    from django.core.management import call_command
    from django.db import connection

    from livedata.capture.readiness import REINSTALL, not_installed
    from livedata.demo.bookstore.models import Book

    assert not_installed() == []
    with connection.cursor() as cur:
        cur.execute("DROP TRIGGER pgtrigger_livedata_insert_539dc ON livedata_demo_book")
    try:
        [missing] = not_installed()
        assert (missing.model, missing.step, missing.triggers) == (
            Book,
            REINSTALL,
            ("livedata_insert",),
        )
        assert missing.commands() == "python manage.py pgtrigger install"
    finally:
        call_command("pgtrigger", "install")
    assert not_installed() == []


def test_a_static_publication_without_collection_is_an_error() -> None:
    from livedata.api import API, Publication
    from livedata.checks import publications_have_collections
    from tests.testapp.models import Note

    class Notes(Publication):
        queries = [Note.objects.all()]

    API.register([Notes])
    try:
        [error] = publications_have_collections()
        assert error.id == "livedata.E007" and "'Notes' publishes testapp.Note rows" in error.msg
    finally:
        del API.publications["Notes"]


def test_a_missing_context_middleware_is_a_warning(settings) -> None:
    from livedata.checks import MIDDLEWARE_PATH, context_middleware_installed

    assert context_middleware_installed() == []
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE_PATH]
    [warning] = context_middleware_installed()
    assert warning.id == "livedata.W007"


@pytest.mark.parametrize(
    ("name", "flagged"),
    [
        ("LIVE_DATA", True),
        ("LiveData", True),
        ("LIVEDATA_SETTINGS", True),
        ("LIVDATA", True),
        ("DDP_ALLOWED_ORIGINS", True),
        ("DDP_ANYTHING", True),
        ("WEBHOOK_TIMEOUT", True),
        ("LISTENER_POL_INTERVAL", True),
        ("LIVEDATA", False),
        ("SITE_URL", False),  # unprefixed names are common in projects
        ("WEBHOOK_SECRET", False),  # another library's, not near one of ours
        ("ACCOUNT_EMAIL_REQUIRED", False),  # django-allauth's
        ("DATABASES", False),
    ],
)
def test_settings_look_alikes(name, flagged) -> None:
    from livedata.conf import look_alike

    assert (look_alike(name) is not None) is flagged


def test_accounts_in_use_reads_the_code() -> None:
    from livedata.accounts.usage import reads_attribute

    def reads(self):
        return self.user.pk

    def other(self, user):
        return user.pk

    def method(call, x):
        call.set_user(None)

    assert reads_attribute(reads, ("user",))
    assert not reads_attribute(other, ("user",))
    assert reads_attribute(method, ("user", "set_user"))
    assert reads_attribute(len, ("user",))  # no source: taken to read it


def test_the_digest_hasher_warning_needs_accounts_in_use(settings) -> None:
    from livedata.accounts import usage
    from livedata.accounts.checks import digest_hasher_configured

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    assert usage.accounts_in_use() == "publication 'MyBooks' reads self.user"  # the demo's
    [warning] = digest_hasher_configured()
    assert warning.id == "livedata.W001"
    saved = (usage._publication_user, usage._method_user)
    usage._publication_user = usage._method_user = lambda: None  # a project without them
    try:
        assert digest_hasher_configured() == []
        settings.LIVEDATA = {**settings.LIVEDATA, "ACCOUNTS_ALLOW_SIGNUP": True}
        [warning] = digest_hasher_configured()
        assert "LIVEDATA sets ACCOUNTS_ALLOW_SIGNUP" in warning.msg
    finally:
        usage._publication_user, usage._method_user = saved


def test_livedata_own_methods_do_not_count_as_using_the_accounts() -> None:
    """The dashboard's staff-only methods need a login (Django's session cookie), not
    Meteor's digest logins: a project without accounts gets no W001 for them."""
    from livedata.accounts import usage
    from livedata.publish.methods import registry

    own = [name for name in registry.names() if name.startswith("livedata.dashboard.")]
    assert own and all(registry.get(name).permission_required for name in own)
    assert usage._method_user(own) is None


def test_an_unknown_livedata_key_says_which_was_meant(settings) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from livedata.conf import livedata_settings

    settings.LIVEDATA = {"DDP_ALLOWED_ORIGIN": ["https://a.example"]}
    with pytest.raises(ImproperlyConfigured, match=r"DDP_ALLOWED_ORIGIN \(did you mean "):
        livedata_settings()
