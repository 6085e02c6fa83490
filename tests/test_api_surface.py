"""``livedata.api`` is the one import surface: every name a project needs, the same
objects as at their old import paths (which keep working)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

import livedata
import livedata.api as api
from livedata.capture.context import context
from livedata.capture.declare import track
from livedata.capture.history import history
from livedata.ddp.errors import DDPError
from livedata.publish.methods import MethodCall, method
from livedata.publish.publication import API, Collection, Publication, publish

OLD_PATHS = {
    "API": API,
    "Collection": Collection,
    "DDPError": DDPError,
    "MethodCall": MethodCall,
    "Publication": Publication,
    "context": context,
    "history": history,
    "method": method,
    "publish": publish,
    "track": track,
}


def test_every_public_name_is_exported_and_is_the_original():
    assert sorted(api.__all__) == sorted(OLD_PATHS)
    for name, obj in OLD_PATHS.items():
        assert getattr(api, name) is obj, name
    for name in ("track", "context", "history"):
        assert getattr(livedata, name) is OLD_PATHS[name]


def test_publish_api_is_a_deprecated_alias_of_publish_publication():
    sys.modules.pop("livedata.publish.api", None)
    with pytest.deprecated_call(match="livedata.publish.api is deprecated"):
        old = importlib.import_module("livedata.publish.api")
    for name in ("API", "Collection", "Publication", "publish"):
        assert getattr(old, name) is OLD_PATHS[name], name


def test_readme_lists_the_surface():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### The public import surface", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert listed == set(api.__all__)


def test_demo_and_testapp_import_from_the_surface():
    root = Path(__file__).parents[1]
    for path in (root / "src/livedata/demo/bookstore/ddp.py", root / "tests/testapp/ddp.py"):
        text = path.read_text()
        assert "from livedata.api import" in text, path
        assert not re.search(r"from livedata\.(publish|ddp\.errors)\b", text), path
