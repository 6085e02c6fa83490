"""The digest hasher: one stored hash, checked from the password and from its digest."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import User
from django.test import override_settings

from livedata.accounts import hashers


def test_password_and_digest_check_the_same_hash():
    encoded = make_password("s3cret")
    assert encoded.startswith("livedata_pbkdf2_sha256digest$")
    assert check_password("s3cret", encoded)
    digest = hashlib.sha256(b"s3cret").hexdigest()
    assert hashers.check_digest(digest, encoded) == (True, False)
    assert hashers.check_digest(hashlib.sha256(b"nope").hexdigest(), encoded) == (False, False)
    # a hash made from the digest alone (createUser) checks the password too
    assert check_password("s3cret", hashers.make_digest_password(digest))


def test_non_ascii_passwords_digest_as_meteor_does():
    # Meteor: SHA256 of the UTF-8 bytes, lower-case hex
    assert hashers.sha256_digest("pässwörd") == hashlib.sha256("pässwörd".encode()).hexdigest()
    assert check_password("pässwörd", make_password("pässwörd"))


@override_settings(
    PASSWORD_HASHERS=[
        "tests.testapp.hashers.FastDigestPBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
)
@pytest.mark.django_db
def test_older_hashes_upgrade_on_a_password_login_then_digests_work():
    user = User.objects.create(username="old", password=make_password("pw", hasher="md5"))
    digest = hashlib.sha256(b"pw").hexdigest()
    assert hashers.check_digest(digest, user.password) == (False, False)  # cannot, yet
    assert user.check_password("pw")  # Django's upgrade-on-login rewrites it
    user.refresh_from_db()
    assert hashers.check_digest(digest, user.password)[0]


def test_iterations_change_is_an_update_from_the_digest():
    class Older(hashers.DigestPBKDF2PasswordHasher):
        iterations = 10

    encoded = Older().encode("pw", "saltsaltsaltsalt1234")
    digest = hashlib.sha256(b"pw").hexdigest()
    assert hashers.check_digest(digest, encoded) == (True, True)  # rewritten at login
