"""Which addresses webhooks may connect to (checked on the address being connected to)."""

from __future__ import annotations

import pytest

from livedata.webhooks.addresses import (
    is_loopback_name,
    parse_host,
    refusal,
    resolved_refusal,
)
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
        ("ff02::1", "multicast"),
        ("192.88.99.1", "non-global"),  # 6to4 relay anycast
        ("64:ff9b:1::a00:1", "non-global"),  # local-use NAT64
        ("5f00::1", "non-global"),
        ("3fff::1", "non-global"),
        ("fec0::1", "non-global"),
    ],
)
def test_refused(address: str, kind: str) -> None:
    problem = refusal(address, ())
    assert problem is not None and kind in problem and "WEBHOOK_ALLOWED_NETWORKS" in problem


@pytest.mark.parametrize(
    ("address", "embedded", "form"),
    [
        ("::127.0.0.1", "127.0.0.1", "IPv4-compatible"),  # issue 19, finding 13
        ("64:ff9b::7f00:1", "127.0.0.1", "NAT64"),
        ("2002:7f00:1::", "127.0.0.1", "6to4"),
        ("2002:a00:1::1", "10.0.0.1", "6to4"),
        ("2002:a9fe:a9fe::", "169.254.169.254", "6to4"),  # cloud metadata
        ("::ffff:0:127.0.0.1", "127.0.0.1", "IPv4-translated"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254", "NAT64"),
        # Teredo: the client's address is stored inverted (here 127.0.0.1)
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1", "Teredo"),
    ],
)
def test_embedded_ipv4_is_judged_by_itself(address: str, embedded: str, form: str) -> None:
    problem = refusal(address, ())
    assert problem is not None and f"embeds {embedded} ({form})" in problem, problem
    assert "WEBHOOK_ALLOWED_NETWORKS" in problem
    # allowing the IPv4 network allows its embeddings (the traffic's real target)
    assert refusal(address, (f"{embedded}/32",)) is None


def test_embedded_global_ipv4_is_allowed() -> None:
    assert refusal("64:ff9b::5db8:d70e", ()) is None  # NAT64 of 93.184.215.14
    assert refusal("2002:5db8:d70e::1", ()) is None  # 6to4 of it
    assert refusal("::ffff:93.184.215.14", ()) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.1", "127.0.0.1"),  # hex, two parts
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0X7F.0.0.01", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # trailing dot
        ("10.0.258", "10.0.1.2"),
        ("0", "0.0.0.0"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_every_ipv4_notation_is_read(host: str, address: str) -> None:
    assert str(parse_host(host)) == address
    assert refusal(parse_host(host), ()) is not None


@pytest.mark.parametrize(
    "host",
    ["example.com", "0x7g.1", "08.0.0.1", "1.2.3.4.5", "256.1.1.1", "1.2.65536", "٣.1", "0x_1"],
)
def test_names_are_not_addresses(host: str) -> None:
    assert parse_host(host) is None


def test_names_are_judged_by_what_they_resolve_to() -> None:
    assert is_loopback_name("localhost") and is_loopback_name("evil.LOCALHOST.")
    assert not is_loopback_name("localhost.example.com")
    problem = resolved_refusal("localhost", 80, ())  # /etc/hosts: 127.0.0.1 (and ::1)
    assert problem is not None and problem.startswith("localhost resolves to ")
    assert "loopback" in problem
    assert resolved_refusal("localhost", 80, ("127.0.0.0/8", "::1/128")) is None
    assert resolved_refusal("no-such-host.invalid", 80, ()) is None  # left to connect time


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
    for embedded in ("::7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::", "::ffff:7f00:1"):
        with pytest.raises(RefusedAddress, match="loopback"):
            make((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (embedded, 80, 0, 0)))


def test_retry_after() -> None:
    assert retry_after("120", 3600) == 120
    assert retry_after("999999", 3600) == 3600
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 3600) == 0.0  # in the past
    assert retry_after("soon", 3600) is None
    assert retry_after(None, 3600) is None
