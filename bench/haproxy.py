"""HAProxy in front of ``livedata serve`` processes: its configuration, made in one place
for the README's "Deployment: several hosts" example, tests/server/test_hosts.py and
bench/storm.py, and Debian's package installed when missing.

- ``/websocket`` (raw DDP) is balanced round-robin: each connection is one request.
- ``/sockjs/...`` is hashed on its first 3 path segments, ``/sockjs/<server>/<session>``:
  SockJS's HTTP transports (xhr-polling, xhr-streaming...) make many requests per
  session, and a session lives in one process, so all of them must reach it (sticky
  sessions with no cookie and no shared state). Consistent hashing moves only the
  sessions of a process that goes away.
- Each response names the process that served it (``X-Livedata-Server``), for operators
  and for the test that checks the stickiness.
- ``X-Forwarded-For`` carries the client's address (``option forwardfor``): list
  HAProxy's address in the processes' ``HTTP_FORWARDED_ALLOW_IPS``.
- A process is checked every 200 ms and taken out after one failed check; a refused
  connection is retried on another process (``option redispatch``).
"""

from __future__ import annotations

from bench import debian

TEMPLATE = """\
global
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    # DDP connections and SockJS streams are long-lived; DDP heartbeats keep them busy
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    retries 3
    option redispatch
    # the client's address, for the processes' HTTP_FORWARDED_ALLOW_IPS
    option forwardfor
frontend livedata
    bind {bind}
    use_backend livedata_sockjs if {{ path_beg /sockjs/ }}
    default_backend livedata
backend livedata
    balance roundrobin
    http-response set-header X-Livedata-Server %[srv_name]
    default-server check inter 200ms fall 1 rise 2
{servers}
backend livedata_sockjs
    # /sockjs/<server>/<session>/<transport>: one session, one process
    balance uri depth 3
    hash-type consistent
    http-response set-header X-Livedata-Server %[srv_name]
    default-server check inter 200ms fall 1 rise 2
{servers}
"""


def config(bind: str, servers: list[str]) -> str:
    """The configuration for HAProxy listening on ``bind`` in front of ``servers``
    (``host:port`` each, named s0, s1, ... in the order given)."""
    lines = "\n".join(f"    server s{i} {address}" for i, address in enumerate(servers))
    return TEMPLATE.format(bind=bind, servers=lines)


def binary() -> str | None:
    """The haproxy binary, installed from Debian's package when missing (as root)."""
    return debian.binary("haproxy")


#: the README's example: 2 hosts with 2 processes each, HAProxy on port 80
EXAMPLE_BIND = "*:80"
EXAMPLE_SERVERS = ["app1:8001", "app1:8002", "app2:8001", "app2:8002"]


if __name__ == "__main__":  # python -m bench.haproxy: the README's example
    print(config(EXAMPLE_BIND, EXAMPLE_SERVERS), end="")
