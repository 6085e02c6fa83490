"""Which addresses outgoing webhooks may connect to.

Private, loopback, link-local, multicast, reserved and other non-global addresses are
refused unless they fall in ``LIVEDATA["WEBHOOK_ALLOWED_NETWORKS"]``. The check runs on
the address a socket is about to connect to (after DNS resolution, see
``transport.guarded_socket``), so a name that resolves to an internal address, or
re-resolves to one later (DNS rebinding), is refused too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in allowed)


def refusal(address: str, allowed: Iterable[str]) -> str | None:
    """Why connecting to ``address`` (an IP literal) is refused, or None when allowed."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in _networks(tuple(allowed))):
        return None
    if ip.is_global and not ip.is_multicast:
        return None
    kind = (
        "loopback"
        if ip.is_loopback
        else "link-local"
        if ip.is_link_local
        else "private"
        if ip.is_private
        else "multicast"
        if ip.is_multicast
        else "non-global"
    )
    return (
        f"{ip} is a {kind} address: webhooks may not reach it "
        '(allow its network in LIVEDATA["WEBHOOK_ALLOWED_NETWORKS"])'
    )
