"""Which addresses outgoing webhooks may connect to.

The rule: outgoing webhooks refuse non-global addresses in every notation, unless they
fall in ``LIVEDATA["WEBHOOK_ALLOWED_NETWORKS"]``. Non-global means private, loopback,
link-local, multicast, reserved, documentation and the other ranges IANA's special-purpose
registries do not mark globally reachable (our own table below, so the answer does not
depend on the Python version's ``is_global``), and also every IPv6 form that carries an
IPv4 address inside it, judged by that IPv4 address: IPv4-mapped ``::ffff:a.b.c.d``,
IPv4-translated ``::ffff:0:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::a.b.c.d``, 6to4 ``2002:AABB:CCDD::`` and Teredo ``2001:0::`` (its client
address). ``[::127.0.0.1]`` reaches loopback through a NAT64 or 6to4 gateway as surely as
``127.0.0.1`` does.

Two checks use this:

- when a subscription is created (``views._check_url``): the URL's host, as an IP literal
  in any notation a client library or resolver accepts (``2130706433``, ``0177.0.0.1``,
  ``0x7f.1``: see ``parse_host``), ``localhost`` and ``*.localhost``, or a name whose
  current addresses are refused (``resolved_refusal``): a precise 400 at once;
- on the address a socket is about to connect to (after DNS resolution, see
  ``transport.guarded_socket``), so a name that re-resolves to an internal address later
  (DNS rebinding) is refused too. This is the check that cannot be got round.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Ranges IANA's special-purpose registries do not mark globally reachable (or mark N/A),
#: with the kind named in the refusal. Python's ``is_global`` misses several of them
#: (3.11: 64:ff9b:1::/48, 5f00::/16, 3fff::/20, multicast, 192.88.99.0/24, ...).
_NON_GLOBAL: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), kind)
    for net, kind in (
        ("0.0.0.0/8", "private"),  # "this network" (0.0.0.0 reaches the local host)
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "non-global"),  # carrier-grade NAT
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "non-global"),  # IETF protocol assignments
        ("192.0.2.0/24", "non-global"),  # documentation
        ("192.88.99.0/24", "non-global"),  # 6to4 relay anycast (deprecated)
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "non-global"),  # benchmarking
        ("198.51.100.0/24", "non-global"),
        ("203.0.113.0/24", "non-global"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "non-global"),  # reserved, and the broadcast address
        ("::1/128", "loopback"),
        ("::/128", "non-global"),  # unspecified
        ("64:ff9b:1::/48", "non-global"),  # local-use NAT64 (RFC 8215)
        ("100::/64", "non-global"),  # discard-only
        ("2001::/23", "non-global"),  # IETF protocol assignments (Teredo: also below)
        ("2001:db8::/32", "non-global"),  # documentation
        ("3fff::/20", "non-global"),  # documentation
        ("5f00::/16", "non-global"),  # segment routing SIDs
        ("fc00::/7", "private"),  # unique local
        ("fe80::/10", "link-local"),
        ("fec0::/10", "non-global"),  # site-local (deprecated)
        ("ff00::/8", "multicast"),
    )
)

_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

#: Names that are loopback whatever DNS says (RFC 6761): never looked up.
LOOPBACK_NAMES = ("localhost",)


@lru_cache(maxsize=32)
def _networks(allowed: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in allowed)


def kind_of(ip: IPAddress) -> str | None:
    """Why ``ip`` is not global ("loopback", "private", ...), or None when it is."""
    for network, kind in _NON_GLOBAL:
        if ip.version == network.version and ip in network:
            return kind
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-global"
    return None


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries (and the form's name), if any."""
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _IPV4_TRANSLATED:
        return low, "IPv4-translated"
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves
        return low, "IPv4-compatible"
    if ip in _NAT64:
        return low, "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip.teredo is not None:
        return ip.teredo[1], "Teredo"
    return None


def refusal(address: str | IPAddress, allowed: Iterable[str]) -> str | None:
    """Why connecting to ``address`` (an IP) is refused, or None when allowed."""
    if isinstance(address, str):
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
    else:
        ip = address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # the socket reaches the IPv4 address itself
    networks = _networks(tuple(allowed))
    if _allowed(ip, networks):
        return None
    inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if inner is not None:
        v4, form = inner
        if _allowed(v4, networks):
            return None
        kind = kind_of(v4)
        if kind is not None:
            return (
                f"{ip} embeds {v4} ({form}), a {kind} address: webhooks may not reach it "
                '(allow its network in LIVEDATA["WEBHOOK_ALLOWED_NETWORKS"])'
            )
    kind = kind_of(ip)
    if kind is None:
        return None
    return (
        f"{ip} is a {kind} address: webhooks may not reach it "
        '(allow its network in LIVEDATA["WEBHOOK_ALLOWED_NETWORKS"])'
    )


def _allowed(ip: IPAddress, networks: tuple[Network, ...]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def parse_host(host: str) -> IPAddress | None:
    """The address a URL's host names when it is an IP literal in any notation, else None.

    Besides the standard forms (``127.0.0.1``, ``[::1]``, with a zone), the legacy IPv4
    notations that ``inet_aton``, resolvers and URL parsers accept: one to four parts,
    each decimal, octal (a leading 0) or hex (``0x``), the last filling the remaining
    bytes, with an optional trailing dot: ``2130706433``, ``0177.0.0.1``, ``0x7f.1``,
    ``127.1`` are all 127.0.0.1.
    """
    text = host.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    return _legacy_ipv4(text)


def _legacy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing dot
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        number = _number(part)
        if number is None:
            return None
        numbers.append(number)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _number(part: str) -> int | None:
    """One part of a legacy IPv4 literal (ASCII digits only: ``int`` would also take
    other scripts' digits and underscores)."""
    if part[:2].lower() == "0x":
        digits = part[2:]
        return int(digits or "0", 16) if all(c in _HEX for c in digits) else None
    if not part or not all(c in _DEC for c in part):
        return None
    if len(part) > 1 and part.startswith("0"):
        return int(part[1:], 8) if all(c in _OCT for c in part) else None
    return int(part)


_HEX = frozenset("0123456789abcdefABCDEF")
_DEC = frozenset("0123456789")
_OCT = frozenset("01234567")


def is_loopback_name(host: str) -> bool:
    """``localhost`` and its subdomains (RFC 6761: always loopback, never looked up)."""
    name = host.rstrip(".").lower()
    return any(name == n or name.endswith("." + n) for n in LOOPBACK_NAMES)


def resolved_refusal(
    host: str, port: int, allowed: Iterable[str], timeout: float = 2.0
) -> str | None:
    """Why ``host`` (a name) is refused by what it resolves to now, or None.

    An early, friendlier answer than the connect-time check (which still applies to
    every connection: a name may resolve differently later). A name that does not
    resolve within ``timeout`` seconds, or at all, is not refused here.
    """
    found: list[list[str]] = []

    def look_up() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return
        found.append(sorted({str(info[4][0]) for info in infos}))

    thread = threading.Thread(target=look_up, name="livedata-webhook-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    for address in found[0] if found else ():
        problem = refusal(address, allowed)
        if problem:
            return f"{host} resolves to {address}: {problem}"
    return None
