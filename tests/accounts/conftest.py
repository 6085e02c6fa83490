"""A server with a file email backend (the tests read the mails it sends)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import _serve


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    path = tmp_path / "mail"
    path.mkdir()
    return path


@pytest.fixture
def accounts_server(transactional_db, mail_dir: Path) -> Iterator[str]:
    yield from _serve(
        "1",
        LIVEDATA_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        LIVEDATA_EMAIL_DIR=str(mail_dir),
    )
