"""``livedata status``: the cluster's state as the database knows it, one line per item.

- the change log: its head (the current snapshot), its newest change, its pruned horizon;
- the broker and the leader (issue 15's scale-out): "not configured" until it lands; it
  plugs its lines in at ``cluster_lines``;
- live server processes: the listeners' LISTEN connections in ``pg_stat_activity``
  (named ``livedata listener HOST:PID``, see ``capture.listener.application_name``) and the
  webhook dispatchers' (``livedata webhooks HOST:PID``);
- each webhook subscription's saved position: how many committed transactions and rows
  of its models it has not received, and how old the oldest is;
- each pull mirror's saved position (``livedata mirror``, when this database has any);
- with ``--url``, the figures of a running process, scraped from its metrics endpoint.

An unreachable database is one line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from livedata.capture import log
from livedata.capture.listener import APPLICATION_NAME
from livedata.capture.position import Position, PositionError
from livedata.conf import livedata_settings

PROCESSES_SQL = """
SELECT application_name, pid, client_addr::text, backend_start, state
FROM pg_stat_activity
WHERE datname = current_database()
  AND (application_name LIKE %s OR application_name LIKE 'livedata webhooks %%')
ORDER BY application_name, pid
"""
NEWEST_SQL = f"SELECT id, at FROM {log.LOG_TABLE} ORDER BY id DESC LIMIT 1"
HORIZON_AT_SQL = f"SELECT txid::text, pruned_at FROM {log.HORIZON_TABLE} WHERE name = 'pruned'"


LEADER_SQL = """
SELECT a.application_name, a.pid, a.backend_start FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int = hashtext('livedata.leader')
  AND l.objid::int = hashtext(%s)
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def cluster_lines(cur: Any, now: datetime) -> list[str]:
    """The broker's line (reachable or not) and the leader's (who holds its lock)."""
    conf = livedata_settings()
    if not conf.LISTENER_BROKER_URL:
        return [
            "broker: not configured (every server process reads the log itself)",
            "leader: none (no leader election without a broker)",
        ]
    from livedata.capture.broker import BrokerUnavailable, Stream

    stream = Stream(conf.LISTENER_BROKER_URL, conf.LISTENER_BROKER_STREAM, maxlen=1)
    try:
        asyncio.run(_ping(stream))
        reach = "reachable"
    except BrokerUnavailable as exc:
        reach = f"UNREACHABLE ({exc}): processes read the log themselves"
    lines = [f"broker: redis stream {stream.key!r} {reach}"]
    cur.execute(LEADER_SQL, [stream.key])
    held = cur.fetchone()
    if held is None:
        lines.append("leader: none holds the lock (no server running, or the broker is down)")
    else:
        lines.append(f"leader: {held[0]} (backend pid {held[1]}, since {_ago(held[2], now)})")
    return lines


async def _ping(stream: Any) -> None:
    try:
        await stream.ping()
    finally:
        await stream.close()


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    return f"{when.isoformat(timespec='seconds')} ({(now - when).total_seconds():.1f} s ago)"


class Command(BaseCommand):
    help = (
        "Print the cluster's state from the database: the change log's head and horizon, "
        "live server processes, each consumer's saved position and lag; with --url, a "
        "running process's figures."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            action="append",
            default=[],
            metavar="URL",
            help="a process's metrics endpoint, e.g. http://127.0.0.1:8000/livedata/metrics "
            "(repeat for several)",
        )
        parser.add_argument(
            "--token", help="metrics or staff API token for --url (default: $LIVEDATA_TOKEN)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            lines = self._database_lines()
        except DatabaseError as exc:
            cause = exc.__cause__ or exc
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise CommandError(f"the database is unreachable: {first}") from None
        for line in lines:
            self.stdout.write(line)
        token = options["token"] or os.environ.get("LIVEDATA_TOKEN", "")
        failed = []
        for url in options["url"]:
            try:
                for line in scrape_lines(url, token):
                    self.stdout.write(line)
            except ScrapeError as exc:
                failed.append(str(exc))
        if failed:
            raise CommandError("; ".join(failed))

    def _database_lines(self) -> list[str]:
        now = datetime.now(UTC)
        lines = []
        with connection.cursor() as cur:
            cur.execute(log.HEAD_SQL)
            head = cur.fetchone()[0]
            cur.execute(NEWEST_SQL)
            newest = cur.fetchone()
            cur.execute(HORIZON_AT_SQL)
            horizon = cur.fetchone()
            cur.execute(PROCESSES_SQL, [APPLICATION_NAME + " %"])
            processes = cur.fetchall()
        in_flight = len(Position.parse(head).snapshot.xip)
        lines.append(f"log: head {head} ({in_flight} transaction(s) in flight)")
        if newest is None:
            lines.append("log: empty (no change recorded, or all pruned)")
        else:
            lines.append(f"log: newest change #{newest[0]} written {_ago(newest[1], now)}")
        if horizon is None:
            lines.append("log: horizon none (never pruned: every change since install is kept)")
        else:
            lines.append(f"log: horizon txid {horizon[0]}, pruned {_ago(horizon[1], now)}")
        with connection.cursor() as cur:
            lines += cluster_lines(cur, now)
        listeners = [p for p in processes if p[0].startswith(APPLICATION_NAME)]
        for name, pid, address, started, state in processes:
            role = "server" if name.startswith(APPLICATION_NAME) else "webhook delivery"
            lines.append(
                f"process: {name} ({role}; backend pid {pid}, from {address or 'local socket'}, "
                f"connected {_ago(started, now)}, {state})"
            )
        if not listeners:
            lines.append(
                "process: no listener connected to this database (no `livedata serve` or "
                "`livedata deliver` running, or this role may not see their connections)"
            )
        lines += self._webhook_lines(now)
        lines += self._mirror_lines(now)
        return lines

    def _webhook_lines(self, now: datetime) -> list[str]:
        from livedata.webhooks.models import Subscription

        lines = []
        for sub in Subscription.objects.select_related("owner").order_by("id"):
            where = f'webhook {sub.id} "{sub.name}" (owner {sub.owner}) {sub.state}'
            if sub.state != Subscription.State.ACTIVE:
                lines.append(f"{where}: {sub.disabled_reason or 'no reason recorded'}")
                continue
            try:
                position = Position.parse(str(sub.position))
            except PositionError:
                lines.append(f"{where}: its saved position {sub.position!r} is not readable")
                continue
            late = log.behind(connection, position, models=sub.model_labels)
            more = "+" if late.capped else ""
            oldest = "" if late.oldest is None else f", oldest written {_ago(late.oldest, now)}"
            retry = f", {sub.attempts} failed attempt(s), next {sub.next_attempt_at}"
            saved = str(sub.position)
            saved = saved if len(saved) <= 60 else saved[:57] + "..."
            lines.append(
                f"{where} at {saved}: behind {late.transactions}{more} transaction(s), "
                f"{late.rows}{more} "
                f"row(s) of its models{oldest}; delivered {sub.delivered}"
                + (retry if sub.attempts else "")
            )
        return lines

    def _mirror_lines(self, now: datetime) -> list[str]:
        from livedata.pull.models import MirrorPosition

        return [
            f'mirror "{m.name}" ({m.phase}): offset {m.offset}, {m.changes} change(s) applied, '
            f"saved {_ago(m.updated_at, now)}"
            for m in MirrorPosition.objects.order_by("name")
        ]


class ScrapeError(Exception):
    pass


def scrape_lines(url: str, token: str) -> list[str]:
    """``url``'s livedata figures, one ``url: name{labels} value`` line per value."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise ScrapeError(f"{url}: cannot scrape: {exc}") from None
    if response.status_code != 200:
        hint = " (give --token or $LIVEDATA_TOKEN)" if response.status_code in (401, 403) else ""
        raise ScrapeError(f"{url}: answered {response.status_code}{hint}")
    lines = []
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if not sample.name.startswith("livedata_") or sample.name.endswith("_created"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            value = sample.value
            shown = str(int(value)) if value.is_integer() else f"{value:.3f}"
            lines.append(f"{url}: {sample.name}{'{' + labels + '}' if labels else ''} {shown}")
    return lines
