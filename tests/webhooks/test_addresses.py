"""Which addresses webhooks may connect to (checked on the address being connected to)."""

from __future__ import annotations

import pytest

from livedata.webhooks.addresses import refusal
from livedata.webhooks.transport import RefusedAddress, retry_after, socket_factory


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("0.0.0.0", "private"),
        ("100.64.0.1", "non-global"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
    ],
)
def test_refused(address: str, kind: str) -> None:
    problem = refusal(address, ())
    assert problem is not None and kind in problem and "WEBHOOK_ALLOWED_NETWORKS" in problem


def test_allowed() -> None:
    assert refusal("93.184.215.14", ()) is None
    assert refusal("2606:4700::1111", ()) is None
    assert refusal("10.1.2.3", ("10.1.0.0/16",)) is None
    assert refusal("10.2.2.3", ("10.1.0.0/16",)) is not None
    assert refusal("127.0.0.1", ("127.0.0.0/8",)) is None


def test_the_socket_factory_refuses_before_connecting() -> None:
    import socket

    make = socket_factory(())
    with pytest.raises(RefusedAddress, match="loopback"):
        make((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    sock = socket_factory(("127.0.0.0/8",))(
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))
    )
    sock.close()


def test_retry_after() -> None:
    assert retry_after("120", 3600) == 120
    assert retry_after("999999", 3600) == 3600
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 3600) == 0.0  # in the past
    assert retry_after("soon", 3600) is None
    assert retry_after(None, 3600) is None
