"""The client's address and scheme through trusted reverse proxies.

Behind nginx every connection comes from the proxy: without this, every user shares one
login rate-limit bucket, the audit trail records the proxy's address, and a proxy on the
same host makes every request "loopback", which ``HTTP_API_REQUIRE_TLS`` lets send
credentials in clear. ``LIVEDATA["HTTP_FORWARDED_ALLOW_IPS"]`` (uvicorn's and gunicorn's
``--forwarded-allow-ips``) names the proxies whose ``X-Forwarded-For`` and
``X-Forwarded-Proto`` are believed: addresses, networks (``10.0.0.0/8``), ``"unix"``
(connections over a Unix socket, which only this host can make) or ``"*"`` (any peer:
only when nothing else can reach the port; the client is then the address the nearest
proxy appended, never one further left that a client could have written).

``LivedataApp`` rewrites each request's ASGI scope before anything reads it, so the
client address is the same everywhere: Django's ``REMOTE_ADDR`` (rate limits of the
HTTP APIs, the TLS rule, the audit context of views, the webhooks' API), DDP sessions
(method rate limits, per-address limits, methods' audit context, SockJS's binding) and
the access log. The address is the rightmost one of ``X-Forwarded-For`` that is not a
trusted proxy (what a client puts in the header itself stays left of what the proxies
append); the scheme is the last ``X-Forwarded-Proto``. From any other peer both headers
are ignored. Another ASGI server's own proxy handling should then stay off.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

#: the entry that trusts connections over a Unix socket (they have no client address)
UNIX = "unix"
_SCHEMES = {"http": ("http", "ws"), "https": ("https", "wss")}
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse(entries: Iterable[str]) -> tuple[bool, bool, tuple[_Network, ...]]:
    """``HTTP_FORWARDED_ALLOW_IPS`` as (any peer, Unix sockets, networks); ``ValueError``
    naming the entry that is none of those."""
    if isinstance(entries, str):
        raise ValueError(f"a list of addresses or networks, not the string {entries!r}")
    anyone, unix, networks = False, False, []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"{entry!r} is not a string")
        text = entry.strip()
        if text == "*":
            anyone = True
        elif text == UNIX:
            unix = True
        else:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address, a network, {UNIX!r} or '*'"
                ) from None
    return anyone, unix, tuple(networks)


class TrustedProxies:
    """The proxies of ``HTTP_FORWARDED_ALLOW_IPS`` (see the module docstring)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.anyone, self.unix, self.networks = parse(entries)

    def __bool__(self) -> bool:
        return self.anyone or self.unix or bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        """Whether a peer at ``address`` (None: a Unix socket) is a trusted proxy."""
        if address is None or address == "":
            return self.unix or self.anyone
        return self.anyone or self._listed(address)

    def _listed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_of(self, peer: str | None, forwarded_for: str) -> str | None:
        """The client's address: the rightmost ``X-Forwarded-For`` entry that is not a
        listed proxy (the leftmost when all are; ``"*"`` lists none, so behind it the
        rightmost: what the nearest proxy saw); ``peer`` when the header names none or
        its entry is not an address."""
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._listed(hop):
                return hop if _is_ip(hop) else peer
        return hops[0] if hops and _is_ip(hops[0]) else peer

    def rewrite(self, scope: dict[str, Any]) -> None:
        """Set ``scope["client"]`` and ``scope["scheme"]`` from the forwarding headers,
        in place, when the peer is trusted (so the server's access log agrees)."""
        client = scope.get("client")
        peer = client[0] if client else None
        if not self.trusts(peer):
            return
        forwarded_for = proto = None
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":  # several headers: one list, in order
                text = value.decode("latin-1")
                forwarded_for = text if forwarded_for is None else f"{forwarded_for},{text}"
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1")
        if forwarded_for is not None:
            address = self.client_of(peer, forwarded_for)
            if address != peer:
                scope["client"] = (address, 0)
        if proto is not None:
            last = proto.rsplit(",", 1)[-1].strip().lower()
            schemes = _SCHEMES.get(last)
            if schemes is not None:
                scope["scheme"] = schemes[scope["type"] == "websocket"]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def from_settings() -> TrustedProxies:
    from livedata.conf import livedata_settings

    return TrustedProxies(livedata_settings().HTTP_FORWARDED_ALLOW_IPS)
