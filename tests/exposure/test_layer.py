"""``livedata.exposure`` sits below the channels: it imports none of them, and webhooks'
and pull's exposure code reads it, not DDP's ``publish``."""

from __future__ import annotations

from pathlib import Path

import livedata
from tests.imports import imported_modules

SRC = Path(livedata.__file__).parent
ABOVE = (
    "livedata.publish",
    "livedata.livequery",
    "livedata.webhooks",
    "livedata.pull",
    "livedata.server",
)


def test_exposure_imports_no_channel() -> None:
    files = sorted((SRC / "exposure").glob("*.py"))
    assert files
    for path in files:
        wrong = {m for m in imported_modules(path) if m.startswith(ABOVE)}
        assert not wrong, f"{path.name} imports {wrong}"


def test_webhooks_and_pull_take_exposure_from_exposure() -> None:
    for path in (SRC / "webhooks" / "selection.py", SRC / "pull" / "spec.py"):
        modules = imported_modules(path)
        assert not {m for m in modules if m.startswith("livedata.publish")}, path
        assert "livedata.exposure.filters" in modules, path
