"""The receiver helper and the signing scheme, checked against the Standard Webhooks
library (sign with one side, verify with the other)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from django.http import JsonResponse
from django.test import RequestFactory
from standardwebhooks import Webhook

from livedata.webhooks.receiver import webhook_receiver
from livedata.webhooks.signing import Signer, VerificationError, check_secret, new_secret, verify

SECRET = new_secret()
BODY = json.dumps({"type": "livedata_demo.book.insert", "timestamp": "x", "data": {"pk": "1"}})


def library_headers(secret: str, body: str, msg_id: str = "msg_1", ts: int | None = None):
    ts = int(time.time()) if ts is None else ts
    sig = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_our_signatures_verify_with_the_library() -> None:
    headers = Signer(SECRET).headers("msg_7_1_10_3", BODY.encode())
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)
    assert check_secret(SECRET) is None and SECRET.startswith("whsec_")


def test_library_signatures_verify_with_ours() -> None:
    headers = library_headers(SECRET, BODY)
    assert verify(BODY.encode(), headers, [SECRET]) == "msg_1"
    other = new_secret()
    assert verify(BODY.encode(), headers, [other, SECRET]) == "msg_1"  # rotation
    rotated = {**headers, "webhook-signature": "v1,bm9wZQ== " + headers["webhook-signature"]}
    assert verify(BODY.encode(), rotated, [SECRET]) == "msg_1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-signature": "v1,AAAA"}, "no signature matches"),
        ({"webhook-signature": "v1"}, "no v1 signature"),
        ({"webhook-signature": "v2,abc"}, "no v1 signature"),
        ({"webhook-signature": "v1,!!!"}, "no v1 signature"),
        ({"webhook-timestamp": "soon"}, "not an integer"),
        ({"webhook-timestamp": str(int(time.time()) - 3600)}, "away from now"),
        ({"webhook-id": ""}, "missing"),
    ],
)
def test_bad_headers(change, message) -> None:
    headers = {**library_headers(SECRET, BODY), **change}
    with pytest.raises(VerificationError, match=message):
        verify(BODY.encode(), headers, [SECRET])


def test_tampered_body_and_wrong_secret() -> None:
    headers = library_headers(SECRET, BODY)
    with pytest.raises(VerificationError):
        verify(BODY.replace("1", "2").encode(), headers, [SECRET])
    with pytest.raises(VerificationError):
        verify(BODY.encode(), headers, [new_secret()])


def _request(headers: dict[str, str], body: str = BODY, method: str = "put"):
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    return getattr(RequestFactory(), method)("/hook", body, content_type="application/json", **meta)


def test_decorator_hands_the_event_to_the_view() -> None:
    seen = []

    @webhook_receiver(secret=SECRET)
    def view(request, event):
        seen.append((request.webhook_id, event))

    response = view(_request(library_headers(SECRET, BODY, "msg_9")))
    assert response.status_code == 204
    assert seen == [("msg_9", json.loads(BODY))]

    @webhook_receiver(secret=lambda request: [new_secret(), SECRET], tolerance=10)
    def answering(request, event):
        return JsonResponse({"ok": True})

    assert answering(_request(library_headers(SECRET, BODY))).status_code == 200
    old = library_headers(SECRET, BODY, ts=int(time.time()) - 60)
    refused = answering(_request(old))
    assert refused.status_code == 401 and "tolerance" in json.loads(refused.content)["message"]
    forged = view(_request({**library_headers(SECRET, BODY), "webhook-signature": "v1,AAAA"}))
    assert forged.status_code == 401 and len(seen) == 1
    assert view(RequestFactory().get("/hook")).status_code == 405
    not_json = view(_request(library_headers(SECRET, "[1"), body="[1"))
    assert not_json.status_code == 400


def test_async_views() -> None:
    import asyncio

    @webhook_receiver(secret=SECRET)
    async def view(request, event):
        await asyncio.sleep(0)
        return JsonResponse({"type": event["type"]})

    response = asyncio.run(view(_request(library_headers(SECRET, BODY))))
    assert json.loads(response.content) == {"type": "livedata_demo.book.insert"}
