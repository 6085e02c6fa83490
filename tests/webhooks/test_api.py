"""The subscription API: create/replace/get/list/delete/position, and bad input refused
with a precise 4xx and nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from livedata.accounts import tokens
from livedata.capture.position import START, Position
from livedata.webhooks.models import Subscription
from livedata.webhooks.signing import check_secret

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/livedata/subscriptions/"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Api:
    def __init__(self, client: Client, token: str) -> None:
        self.client = client
        self.auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def put(self, path: str, body: Any, **extra: Any) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.put(
            URL + path, data, content_type="application/json", **self.auth, **extra
        )

    def get(self, path: str = "") -> Any:
        return self.client.get(URL + path, **self.auth)

    def delete(self, path: str) -> Any:
        return self.client.delete(URL + path, **self.auth)


@pytest.fixture
def api(client: Client, token: str) -> Api:
    return Api(client, token)


BOOKS = {"url": "http://127.0.0.1:9/hook", "models": ["livedata_demo.book"]}


def test_create_replace_get_list_delete(api: Api) -> None:
    created = api.put("books", BOOKS)
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["name"] == "books" and body["state"] == "active"
    assert body["models"] == ["livedata_demo.book"]
    assert body["operations"] == ["insert", "update", "delete", "truncate"]
    assert check_secret(body["secret"]) is None  # generated: whsec_ + base64
    assert body["lag"] == {"changes": 0, "more": False, "seconds": 0.0}
    assert Position.parse(body["position"]).complete  # the log's head

    replaced = api.put("books", {**BOOKS, "operations": ["insert"], "filter": {"author": 1}})
    assert replaced.status_code == 200
    assert replaced.json()["secret"] == body["secret"]  # kept when not given
    assert replaced.json()["filter"] == {"author": 1}
    assert api.put("books", {**BOOKS, "secret": SECRET}).json()["secret"] == SECRET

    one = api.get("books").json()
    assert one["operations"] == ["insert", "update", "delete", "truncate"]
    listed = api.get().json()["subscriptions"]
    assert [s["name"] for s in listed] == ["books"] and "secret" not in listed[0]

    assert api.delete("books").status_code == 204
    assert api.get("books").status_code == 404
    assert api.delete("books").status_code == 404
    assert not Subscription.objects.exists()


def test_only_the_callers_subscriptions(api: Api, client: Client) -> None:
    assert api.put("books", BOOKS).status_code == 201
    other = User.objects.create_user("other", "o@example.com", "pw")
    other.user_permissions.set(User.objects.get(username="svc").user_permissions.all())
    them = Api(client, tokens.issue(other, kind="api")[0])
    assert them.get().json() == {"subscriptions": []}
    assert them.get("books").status_code == 404
    assert them.delete("books").status_code == 404
    assert them.get("books/position").status_code == 404
    assert them.put("books/position", {"from": "start"}).status_code == 404
    assert them.put("books", BOOKS).status_code == 201  # their own, same name
    assert Subscription.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"models": ["livedata_demo.book"]}, "url", 400),
        ({**BOOKS, "url": "not a url"}, "url", 400),
        ({**BOOKS, "url": "ftp://example.com/x"}, "url", 400),
        ({**BOOKS, "url": "http://10.1.2.3/hook"}, "url", 400),
        ({**BOOKS, "url": "http://169.254.169.254/latest"}, "url", 400),
        ({**BOOKS, "url": "http://[::10.0.0.1]/hook"}, "url", 400),  # IPv4-compatible
        ({**BOOKS, "url": "http://[64:ff9b::a00:1]/hook"}, "url", 400),  # NAT64
        ({**BOOKS, "url": "http://[2002:a00:1::]/hook"}, "url", 400),  # 6to4
        ({**BOOKS, "url": "http://[::ffff:10.0.0.1]/hook"}, "url", 400),  # IPv4-mapped
        ({**BOOKS, "url": "http://167772161/hook"}, "url", 400),  # 10.0.0.1, decimal
        ({**BOOKS, "url": "http://012.0.0.1/hook"}, "url", 400),  # octal
        ({**BOOKS, "url": "http://0xa.1/hook"}, "url", 400),  # hex
        ({**BOOKS, "models": ["livedata_demo.nope"]}, "models", 400),
        ({**BOOKS, "models": ["testapp.widget"]}, "models", 400),  # not exposed
        ({**BOOKS, "models": "livedata_demo.book"}, "models", 400),
        ({**BOOKS, "models": []}, "models", 400),
        ({**BOOKS, "operations": ["upsert"]}, "operations", 400),
        ({**BOOKS, "filter": {"title__regex": "x"}}, "filter", 400),
        ({**BOOKS, "filter": {"author__email": "x@y"}}, "filter", 400),  # a join
        ({**BOOKS, "filter": {"id": 3}}, "filter", 400),  # not in Collection.filters
        ({**BOOKS, "filter": {"author": "abc"}}, "filter", 400),
        ({**BOOKS, "filter": ["author", 1]}, "filter", 400),
        ({**BOOKS, "fields": ["nope"]}, "fields", 400),
        ({**BOOKS, "fields": "title"}, "fields", 400),
        ({**BOOKS, "secret": "hunter2"}, "secret", 400),
        ({**BOOKS, "secret": "whsec_!!!"}, "secret", 400),
        ({**BOOKS, "batch": 0}, "batch", 400),
        ({**BOOKS, "batch": 10_000}, "batch", 400),
        ({**BOOKS, "active": "yes"}, "active", 400),
        ({**BOOKS, "colour": "red"}, "colour", 400),
        ({**BOOKS, "models": ["livedata_demo.book", "livedata_demo.author"],
          "filter": {"author": 1}}, "filter", 400),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_stored(
    api: Api, body: dict[str, Any], field: str, status: int
) -> None:
    response = api.put("books", body)
    assert response.status_code == status, response.json()
    assert response.json()["field"] == field
    assert response.json()["message"]
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://[::127.0.0.1]:8000/hook",  # issue 19, finding 13: IPv4-compatible
        "http://[64:ff9b::7f00:1]/hook",  # NAT64
        "http://[2002:7f00:1::]/hook",  # 6to4
        "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
        "http://[::ffff:0:7f00:1]/hook",  # IPv4-translated
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo, client 127.0.0.1
        "http://[64:ff9b:1::7f00:1]/hook",  # local-use NAT64
        "http://2130706433/hook",
        "http://0177.0.0.1/hook",
        "http://0x7f.1/hook",
        "http://127.1/hook",
        "http://localhost/hook",
        "http://hooks.localhost/hook",
        "http://[::1]/hook",
    ],
)
def test_loopback_in_every_notation_is_refused(api: Api, url: str, settings: Any) -> None:
    settings.LIVEDATA = {**settings.LIVEDATA, "WEBHOOK_ALLOWED_NETWORKS": []}
    response = api.put("books", {**BOOKS, "url": url})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["field"] == "url" and "WEBHOOK_ALLOWED_NETWORKS" in body["message"], body
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(
    ("filter", "text"),
    [
        ({"title__in": {"a": 1}}, "__in needs a list of values like [1, 2], not an object"),
        ({"title__in": "abc"}, "__in needs a list"),  # Django would take its letters
        ({"title__in": []}, "at least one value"),
        ({"title__in": [["x"]]}, "needs a single value"),
        ({"author__in": [1, "x"]}, "'x' is not a valid author"),
        ({"author_id__range": [1]}, "__range needs two values"),
        ({"author_id__range": {"low": 1}}, "__range needs a list"),
        ({"title__isnull": "no"}, "__isnull needs true or false"),
        ({"title__isnull": 0}, "__isnull needs true or false"),
        ({"author": 1.5}, "author holds integers"),  # Django would take 1
        ({"author": True}, "not a boolean field"),
        ({"author": "x"}, "'x' is not a valid author"),
        ({"title": None}, "use title__isnull"),
        ({"title": {"$ne": ""}}, "needs a single value"),
        ({"title__startswith": 5}, "__startswith needs a string"),
        ({"author__gte": [1, 2]}, "needs a single value"),
    ],
)
def test_filter_values_must_fit_their_lookup(api: Api, filter: Any, text: str) -> None:
    # issue 19, finding 18: such filters were stored and silently matched wrong rows
    response = api.put("books", {**BOOKS, "filter": filter})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["field"] == "filter" and text in body["message"], body
    assert not Subscription.objects.exists()


def test_well_typed_filters_are_kept(api: Api) -> None:
    for good in (
        {"title__in": ["a", "b"]},
        {"author__in": [1, "2"]},
        {"author": 2.0},
        {"title__isnull": False},
        {"title__istartswith": "du"},
    ):
        response = api.put("books", {**BOOKS, "filter": good})
        assert response.status_code in (200, 201), (good, response.json())
        assert response.json()["filter"] == good


def test_malformed_huge_and_unauthenticated(api: Api, client: Client) -> None:
    bad = api.put("books", b"{not json")
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["message"]
    huge = api.put("books", {**BOOKS, "filter": {"title__in": ["x" * 1000] * 100}})
    assert huge.status_code == 413
    assert api.put("books", [1, 2]).status_code == 400
    # NaN is not JSON (PostgreSQL's jsonb refused the stored filter: a 500); 1e400 is inf
    for value in ("NaN", "Infinity", "1e400", "[-Infinity]"):
        body = json.dumps({**BOOKS, "filter": {"title": "x"}}).replace('"x"', value)
        odd = api.put("books", body.encode())
        assert odd.status_code == 400 and "malformed JSON" in odd.json()["message"], value
    assert api.put("bad name!", BOOKS).json()["field"] == "name"
    anonymous = client.put(URL + "books", json.dumps(BOOKS), content_type="application/json")
    assert anonymous.status_code == 401
    assert client.post(URL + "books", {}, **api.auth).status_code == 405
    assert not Subscription.objects.exists()


def test_permission_and_exposure(api: Api, svc: User, client: Client) -> None:
    nobody = User.objects.create_user("nobody", "n@example.com", "pw")
    them = Api(client, tokens.issue(nobody, kind="api")[0])
    denied = them.put("books", BOOKS)
    assert denied.status_code == 403 and denied.json()["field"] == "models"
    assert "livedata_demo.view_book" in denied.json()["message"]
    assert not Subscription.objects.exists()


def test_filters_fields_and_per_model_forms(api: Api) -> None:
    ok = api.put(
        "mixed",
        {
            "url": "http://127.0.0.1:9/hook",
            "models": ["livedata_demo.book", "livedata_demo.author"],
            "filter": {"livedata_demo.book": {"author__in": [1, 2], "title__startswith": "A"}},
            "fields": {"livedata_demo.author": ["email"]},
            "batch": 10,
        },
    )
    assert ok.status_code == 201, ok.json()
    assert api.put("f", {**BOOKS, "fields": ["title"]}).status_code == 201


def test_position(api: Api, connect: Any) -> None:
    api.put("books", BOOKS)
    db = connect()
    author = db.execute(
        "INSERT INTO livedata_demo_author (name, email) VALUES ('A', 'a@x') RETURNING id"
    ).fetchone()[0]
    for i in range(3):
        db.execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES (%s, %s)", [f"b{i}", author]
        )
    from tests.conftest import settle

    settle(db)
    assert api.get("books").json()["lag"]["changes"] == 3
    now = api.put("books/position", {"from": "now"})
    assert now.status_code == 200 and now.json()["lag"]["changes"] == 0
    start = api.put("books/position", {"from": "start"}).json()
    assert start["position"] == str(START) and start["lag"]["changes"] >= 3
    first = db.execute(
        "SELECT txid::text, id FROM livedata_change WHERE model = 'livedata_demo.book' "
        "AND new->>'title' = 'b0' ORDER BY txid DESC, id DESC LIMIT 1"
    ).fetchone()
    at = api.put("books/position", {"from": f"{first[0]}:{first[1]}"}).json()  # old form
    assert at["lag"]["changes"] == 2
    assert Position.parse(at["position"]) == Position.from_cursor(int(first[0]), first[1])
    again = api.put("books/position", {"from": at["position"]}).json()  # the new form
    assert again["position"] == at["position"] and again["lag"]["changes"] == 2
    timed = api.put("books/position", {"from": "2000-01-01T00:00:00Z"}).json()
    assert timed["lag"]["changes"] >= 3
    assert api.put("books/position", {"from": "2999-01-01T00:00:00"}).json()["lag"]["changes"] == 0
    bad = api.put("books/position", {"from": "yesterday"})
    assert bad.status_code == 400 and bad.json()["field"] == "from"
    assert api.put("books/position", {"to": "now"}).status_code == 400
    assert api.put("nope/position", {"from": "now"}).status_code == 404
    sub = Subscription.objects.get()
    assert sub.epoch == 7 and sub.generation == 7  # every position change is a new epoch
    assert api.get("books/position").json()["position"] == sub.position


def test_expired_cursor_is_409(api: Api, connect: Any) -> None:
    api.put("books", BOOKS)
    db = connect()
    db.execute(
        "INSERT INTO livedata_log_horizon (name, txid, last_id, pruned_at) "
        "VALUES ('pruned', '5', 100, now()) ON CONFLICT (name) DO UPDATE SET txid = '5'"
    )
    expired = api.put("books/position", {"from": "4:1"})  # an old cursor
    assert expired.status_code == 409 and expired.json()["error"] == "cursor-expired"
    also = api.put("books/position", {"from": "3:6:3,4"})
    assert also.status_code == 409 and also.json()["error"] == "cursor-expired"
    assert api.put("books/position", {"from": "start"}).json()["position"] == "5:5:"
    assert api.put("books/position", {"from": "5:7:6"}).status_code == 200


def test_replace_reenables_a_disabled_subscription(api: Api) -> None:
    api.put("books", BOOKS)
    Subscription.objects.update(state="disabled", disabled_reason="x", attempts=8)
    assert api.get("books").json()["state"] == "disabled"
    again = api.put("books", BOOKS).json()
    assert again["state"] == "active" and again["attempts"] == 0
    assert again["disabled_reason"] is None
    paused = api.put("books", {**BOOKS, "active": False}).json()
    assert paused["state"] == "disabled"


def test_sql_in_filter_values_and_keys_is_never_executed(api: Api, connect: Any) -> None:
    """Issue 19 (kept): a filter value is stored and matched as data; a key that is not a
    lookup on a filterable column is a 400 and nothing is stored."""
    from datetime import UTC, datetime

    from livedata.capture.log import ChangeRow
    from livedata.webhooks.selection import Selection

    injected = "x' OR '1'='1"
    drop = "'; DROP TABLE livedata_demo_book; --"
    ok = api.put("books", {**BOOKS, "filter": {"title__in": [injected, drop]}})
    assert ok.status_code == 201, ok.json()
    assert api.get("books").json()["filter"] == {"title__in": [injected, drop]}
    assert connect().execute("SELECT count(*) FROM livedata_demo_book").fetchone()[0] == 0  # intact

    selection = Selection(["livedata_demo.book"], filter=Subscription.objects.get().filter)

    def row(title: str) -> ChangeRow:
        new = {"id": 1, "title": title, "author_id": 1}
        at = datetime.now(UTC)
        return ChangeRow(1, 1, "livedata_demo.book", "livedata_demo_book", "insert", "1", None, new,
                         None, None, at)  # fmt: skip

    assert selection.select(row(injected)) is not None and selection.select(row(drop)) is not None
    assert selection.select(row("x")) is None and selection.select(row("1")) is None

    for key in (
        "title; DROP TABLE livedata_demo_book; --",
        "title__exact') OR 1=1 --",
        "title' OR '1'='1",
        "1=1) OR (title",
    ):
        response = api.put("bad", {**BOOKS, "filter": {key: "x"}})
        assert response.status_code == 400 and response.json()["field"] == "filter", key
    assert Subscription.objects.count() == 1
