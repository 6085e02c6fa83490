"""The dashboard in headless Chromium, as an operator uses it: log in to the admin, open
the page, and watch it follow the process live (no reload)."""

from __future__ import annotations

import base64
import os
import struct
import time
import zlib
from pathlib import Path

import pytest

from livedata.webhooks.models import Subscription
from tests.dashboard.conftest import answer
from tests.demo.test_browser import Browser
from tests.webhooks.conftest import subscribe

pytestmark = pytest.mark.django_db(transaction=True)

DOCS = Path(__file__).parents[2] / "docs"
ROW = "document.querySelector('#{table} tbody tr[data-{key}=\"{value}\"]')"


def _row(table: str, key: str, value: object) -> str:
    return ROW.format(table=table, key=key, value=value)


def test_an_operator_watches_the_dashboard_live(
    server, staff, connect, clients, svc, make_receiver, tmp_path
):
    staff.set_password("boss-password")
    staff.save()
    answers = [500]
    receiver = make_receiver(respond=lambda r: (answers[0], {}, b"no"))
    subscribe(svc, "billing", receiver.url)
    hook = Subscription.objects.get(name="billing").pk
    browser = Browser(tmp_path)
    try:
        browser.call("Page.enable")
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call(
            "Page.navigate", url=f"http://{server}/admin/login/?next=/admin/livedata/dashboard/"
        )
        browser.wait_for("document.querySelector('#id_username') !== null")
        browser.evaluate(
            "document.querySelector('#id_username').value = 'boss';"
            "document.querySelector('#id_password').value = 'boss-password';"
            "document.querySelector('#login-form').submit()"
        )
        browser.wait_for("document.getElementById('status')?.dataset.ready === '1'")
        assert browser.evaluate("typeof uPlot") == "function"  # the vendored chart library

        # a row written by psql appears in "recent changes" within a second
        with connect() as conn:
            start = time.monotonic()
            conn.execute(
                "INSERT INTO livedata_demo_author (name, email) VALUES ('Ann', 'ann@x.org')"
            )
            pk = conn.execute(
                "SELECT id FROM livedata_demo_author WHERE email = 'ann@x.org'"
            ).fetchone()[0]
        browser.wait_for(
            "[...document.querySelectorAll("
            "'#changes tbody tr[data-model=\"livedata_demo.author\"]')]"
            f".some(tr => tr.children[4].textContent === '{pk}')",
            timeout=5,
        )
        took = time.monotonic() - start
        assert took < 1.0, f"the insert took {took:.2f} s to show"
        link = "document.querySelector('#changes tbody tr a').getAttribute('href')"
        assert browser.evaluate(link).startswith("/admin/livedata/change/")

        # the subscriber count follows a DDP client subscribing, then leaving
        other = clients()
        other.send({"msg": "sub", "id": "b", "name": "AllBooks", "params": []})
        assert answer(other, "b")[0]["msg"] == "ready"
        browser.wait_for(
            f"{_row('subscriptions', 'publication', 'AllBooks')}?.dataset.count === '1'"
        )
        other.close()
        browser.wait_for(f"{_row('subscriptions', 'publication', 'AllBooks')} === null")

        # a failing receiver shows as retrying; "retry now" delivers once it answers 200
        connect().execute(
            "INSERT INTO livedata_demo_book (title, author_id) VALUES ('Bills', %s)", [pk]
        )
        hook_row = _row("webhook-subscriptions", "id", hook)
        browser.wait_for(f"{hook_row}?.dataset.state === 'retrying'")
        browser.wait_for(f"{hook_row}.textContent.includes('500')")
        _screenshot(browser, tmp_path / "dashboard-retrying.png")
        answers[0] = 200
        browser.evaluate(f"{hook_row}.querySelector('button.retry-now').click()")
        browser.wait_for(
            f"{hook_row}?.dataset.state === 'active' && {hook_row}.dataset.delivered !== '0'"
        )
        browser.wait_for(f"{hook_row}.textContent.includes('200')")
        assert receiver.requests and len(receiver.requests) >= 2  # the 500, then the 200

        # observers with their parameters and how they refresh, for the picture
        reader = clients()
        reader.send({"msg": "sub", "id": "l", "name": "LatestBooks", "params": [5]})
        assert answer(reader, "l")[0]["msg"] == "ready"
        browser.wait_for(f"{_row('observers', 'publication', 'LatestBooks')} !== null")
        # the chart has drawn its samples
        browser.wait_for("document.querySelector('#chart canvas') !== null")
        browser.wait_for("!document.getElementById('webhook-error').offsetHeight")
        shot = _screenshot(browser, tmp_path / "dashboard.png")
        if os.environ.get("LIVEDATA_DOCS_SCREENSHOT"):  # refresh the README's picture
            (DOCS / "dashboard.png").write_bytes(shot.read_bytes())
    finally:
        browser.close()


def _screenshot(browser: Browser, path: Path) -> Path:
    """The whole page as a PNG at ``path``, checked: its size is the page's, and it is
    not blank (the picture holds many colours, not one)."""
    metrics = browser.call("Page.getLayoutMetrics")["cssContentSize"]
    width, height = int(metrics["width"]), int(metrics["height"])
    data = browser.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
    )["data"]
    png = base64.b64decode(data)
    path.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    got_width, got_height = struct.unpack(">II", png[16:24])
    assert (got_width, got_height) == (width, height)
    assert width >= 1200 and height >= 800  # the page's sections, not an error page
    pixels = _pixels(png)
    colours = {pixels[i : i + 3] for i in range(0, min(len(pixels), 3_000_000), 3 * 97)}
    assert len(colours) > 20, "the screenshot is (nearly) blank"
    return path


def _pixels(png: bytes) -> bytes:
    """The image's decompressed scanlines (filter bytes included: enough to tell a blank
    picture from a drawn one)."""
    at, chunks = 8, []
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at : at + 8])
        if kind == b"IDAT":
            chunks.append(png[at + 8 : at + 8 + length])
        at += 12 + length
    return zlib.decompress(b"".join(chunks))
