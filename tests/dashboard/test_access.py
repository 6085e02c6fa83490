"""Only active staff with ``livedata.view_dashboard`` see the dashboard: over DDP (the
publication and its methods) and over HTTP (the admin page) alike."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client as DjangoClient

from livedata.dashboard.documents import COLLECTION
from tests.dashboard.conftest import answer

pytestmark = pytest.mark.django_db(transaction=True)

SUB = {"msg": "sub", "id": "d", "name": "livedata.dashboard", "params": []}
PAGE = "/admin/livedata/dashboard/"


def _refused(c) -> dict:
    c.send(SUB)
    got, before = answer(c, "d")
    assert got["msg"] == "nosub", got
    assert not [m for m in before if m.get("collection", "").startswith(COLLECTION)]
    return got["error"]


def _viewer(username: str, *, staff: bool, perm: bool) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=staff)
    if perm:
        user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    return user


def test_anonymous_and_non_staff_get_no_dashboard_data_over_ddp(clients):
    assert _refused(clients())["error"] == 403
    plain = _viewer("plain", staff=False, perm=True)  # the permission alone is not enough
    assert _refused(clients(plain))["error"] == 403
    no_perm = _viewer("clerk", staff=True, perm=False)  # staff without the permission
    assert _refused(clients(no_perm))["error"] == 403
    inactive = _viewer("gone", staff=True, perm=True)
    c = clients(inactive)  # logged in while active...
    User.objects.filter(pk=inactive.pk).update(is_active=False)
    assert _refused(c)["error"] == 403  # ...checked again at each subscription


def test_staff_with_the_permission_get_the_documents(clients, staff):
    viewer = _viewer("viewer", staff=True, perm=True)
    for user in (staff, viewer):
        c = clients(user)
        c.send(SUB)
        got, before = answer(c, "d")
        assert got["msg"] == "ready"
        ids = {m["id"] for m in before if m.get("collection") == COLLECTION}
        assert ids == {"now", "flow", "webhooks", "pull"}


def test_the_buttons_are_refused_to_others(clients, staff):
    clerk = _viewer("clerk", staff=True, perm=True)  # may look, may not change webhooks
    for c in (clients(), clients(clerk)):
        got = c.call("1", "livedata.dashboard.retryNow", 1)
        result = next(m for m in got if m["msg"] == "result")
        assert result["error"]["error"] == 403
    got = clients(staff).call("1", "livedata.dashboard.retryNow", 12345)
    assert next(m for m in got if m["msg"] == "result")["result"] == 0  # no such one


def test_the_admin_page_is_for_staff_with_the_permission(server, staff):
    anonymous = DjangoClient().get(PAGE)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    plain = DjangoClient()
    plain.force_login(_viewer("plain", staff=False, perm=True))
    assert plain.get(PAGE).status_code == 302  # the admin's own rule: staff only
    clerk = DjangoClient()
    clerk.force_login(_viewer("clerk", staff=True, perm=False))
    assert clerk.get(PAGE).status_code == 403
    for page in (anonymous, plain.get(PAGE), clerk.get(PAGE)):
        assert b"ld-dashboard" not in page.content
    boss = DjangoClient()
    boss.force_login(staff)
    page = boss.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="ld-dashboard"' in html
    for script in ("uPlot.iife.min.js", "dashboard/ddp.js", "dashboard/dashboard.js"):
        assert script in html
    assert "cdn" not in html.lower() and "//unpkg" not in html


def test_logging_out_ends_the_subscription(clients, staff):
    """The connection's user changes (Meteor's ``logout``): the dashboard checks again,
    answers ``nosub`` and removes its documents from the client."""
    c = clients(staff)
    c.send(SUB)
    got, before = answer(c, "d")
    assert got["msg"] == "ready"
    shown = {m["id"] for m in before if m.get("collection") == COLLECTION}
    c.send({"msg": "method", "id": "out", "method": "logout", "params": []})
    seen = c.until(lambda m: m.get("msg") == "nosub" and m["id"] == "d")
    assert seen[-1]["error"]["error"] == 403
    removed = {m["id"] for m in seen if m.get("msg") == "removed" and m["collection"] == COLLECTION}
    assert removed == shown
