"""nginx in front of ``livedata serve`` processes on one host, terminating TLS: the site
configuration and the systemd unit, made in one place for the README's "Deployment:
behind nginx" and tests/server/test_nginx.py, and Debian's package installed when
missing.

- WebSocket upgrades (``/websocket``, SockJS's ``websocket`` transport) are passed on
  (``Upgrade``/``Connection``), over HTTP/1.1, with hour-long timeouts: DDP connections
  and SockJS streams are long-lived and DDP's heartbeats keep them busy.
- ``/sockjs/...`` is hashed on ``/sockjs/<server>/<session>``: SockJS's HTTP transports
  make many requests per session and a session lives in one process (as bench/haproxy.py
  does). Everything else is balanced round-robin.
- Responses are not buffered (SockJS's streaming transports).
- ``X-Forwarded-For`` (the client's address appended) and ``X-Forwarded-Proto``: the
  processes believe them from this proxy only (``HTTP_FORWARDED_ALLOW_IPS``).
- ``Host`` is passed as the client sent it (with its port), for ``ALLOWED_HOSTS`` and
  the DDP origin check.
"""

from __future__ import annotations

import os

from bench import debian

SITE = """\
map $http_upgrade $connection_upgrade {{
    default upgrade;
    ""      close;
}}
# /sockjs/<server>/<session>/<transport>: one session, one process
map $uri $livedata_sockjs_session {{
    ~^/sockjs/(?<session>[^/]+/[^/]+)/ $session;
    default "";
}}
upstream livedata {{
{servers}
}}
upstream livedata_sockjs {{
    hash $livedata_sockjs_session consistent;
{servers}
}}
server {{
    listen {listen} ssl;
    server_name {server_name};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    # DDP connections and SockJS streams are long-lived; DDP heartbeats keep them busy
    proxy_read_timeout 1h;
    proxy_send_timeout 1h;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;
    location /sockjs/ {{
        proxy_pass http://livedata_sockjs;
    }}
    location / {{
        proxy_pass http://livedata;
    }}
}}
"""

#: a whole nginx.conf around the site, for a test's nginx in a directory of its own
MAIN = """\
daemon off;
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{site}}}
"""

#: The systemd unit: one process per port (``livedata@8001``, ``livedata@8002``).
UNIT = """\
# /etc/systemd/system/livedata@.service
[Unit]
Description=livedata serve on port %i
After=network-online.target postgresql.service
Wants=network-online.target

[Service]
User=livedata
WorkingDirectory=/srv/myproject
Environment=DJANGO_SETTINGS_MODULE=myproject.settings
# DATABASE_URL=postgresql://livedata:PASSWORD@db.example.com:5432/myproject?sslmode=verify-full
EnvironmentFile=/etc/livedata/env
ExecStart=/srv/myproject/.venv/bin/livedata serve --host 127.0.0.1 --port %i
# SIGTERM: stop accepting, close DDP WebSockets over HTTP_SHUTDOWN_PERIOD (5 s), exit
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def site(listen: str, servers: list[str], cert: str, key: str, server_name: str) -> str:
    """The ``server`` block and what it uses: nginx listening with TLS on ``listen`` in
    front of ``servers`` (``host:port`` each)."""
    lines = "\n".join(f"    server {address};" for address in servers)
    return SITE.format(listen=listen, servers=lines, cert=cert, key=key, server_name=server_name)


def main(prefix: str, site_config: str) -> str:
    """``site_config`` in a whole nginx.conf whose files are all under ``prefix``."""
    indented = "".join(f"    {line}\n" if line else "\n" for line in site_config.splitlines())
    # as root, workers would run as nobody, who cannot enter a test's private directory
    user = "user root;\n" if os.geteuid() == 0 else ""
    return MAIN.format(prefix=prefix, site=indented, user=user)


def exec_start(port: int) -> list[str]:
    """The unit's ``ExecStart`` for port ``port``, as arguments after the binary."""
    line = next(x for x in UNIT.splitlines() if x.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").replace("%i", str(port)).split()[1:]


def binary() -> str | None:
    """The nginx binary, installed from Debian's package when missing (as root)."""
    return debian.binary("nginx")


#: the README's example: 2 processes on this host, the site's name and certificate
EXAMPLE = {
    "listen": "443",
    "servers": ["127.0.0.1:8001", "127.0.0.1:8002"],
    "cert": "/etc/ssl/certs/live.example.com.pem",
    "key": "/etc/ssl/private/live.example.com.key",
    "server_name": "live.example.com",
}


if __name__ == "__main__":  # python -m bench.nginx: the README's example
    print(site(**EXAMPLE), end="")
