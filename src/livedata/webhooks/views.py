"""The subscription API: ``/subscriptions/`` (GET) and ``/subscriptions/<name>`` (GET, PUT,
DELETE), ``/subscriptions/<name>/position`` (GET, PUT). JSON in and out, through
``livedata.httpapi.api_view`` (authentication, JSON errors); a caller sees and changes
only their own subscriptions. Input is validated completely before anything is stored.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from livedata.capture import log
from livedata.capture.position import Position, PositionError, Snapshot
from livedata.conf import livedata_settings
from livedata.httpapi import ApiError, api_view, read_json
from livedata.webhooks import addresses, signing
from livedata.webhooks.models import Subscription
from livedata.webhooks.selection import Selection, SelectionError, model_of

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
KEYS = {"url", "models", "operations", "filter", "fields", "secret", "batch", "active"}
LAG_CAP = 10_000
_url_validator = URLValidator(schemes=["http", "https"])


@api_view("GET")
def subscription_list(request: Any) -> JsonResponse:
    subs = Subscription.objects.filter(owner=request.api_user)
    return _json({"subscriptions": [represent(s, secret=False) for s in subs]})


@api_view("GET", "PUT", "DELETE")
def subscription_detail(request: Any, name: str) -> HttpResponse:
    _check_name(name)
    if request.method == "PUT":
        return _put(request, name)
    sub = _get(request, name)
    if request.method == "DELETE":
        sub.delete()
        _poke()
        return HttpResponse(status=204)
    return _json(represent(sub))


@api_view("GET", "PUT")
def subscription_position(request: Any, name: str) -> JsonResponse:
    _check_name(name)
    if request.method == "GET":
        return _json(_position(_get(request, name)))
    body = read_json(request)
    if not isinstance(body, dict) or set(body) != {"from"}:
        raise ApiError(
            400, 'send {"from": "now" | "start" | "<position>" | "<ISO time>"}', field="from"
        )
    position = _resolve_position(body["from"])
    with transaction.atomic():
        sub = _get(request, name, lock=True)
        sub.log_position = position
        sub.generation += 1
        sub.epoch += 1
        sub.attempts = 0
        sub.next_attempt_at = None
        sub.updated = timezone.now()
        sub.save()
        transaction.on_commit(_poke)
    return _json(represent(sub))


def _put(request: Any, name: str) -> JsonResponse:
    body = read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "send a JSON object")
    unknown = sorted(set(body) - KEYS)
    if unknown:
        raise ApiError(400, f"unknown key {unknown[0]!r}: use {sorted(KEYS)}", field=unknown[0])
    url = _check_url(body.get("url"))
    try:
        selection = Selection(
            body.get("models"), body.get("operations"), body.get("filter"), body.get("fields")
        )
    except SelectionError as exc:
        raise ApiError(400, exc.message, field=exc.field) from None
    for label in selection.labels:
        model = model_of(label)
        perm = f"{model._meta.app_label}.view_{model._meta.model_name}"
        if not request.api_user.has_perm(perm):
            raise ApiError(403, f"you need the {perm} permission", field="models")
    secret = body.get("secret")
    if secret is not None and (problem := signing.check_secret(secret)):
        raise ApiError(400, problem, field="secret")
    batch = body.get("batch", 1)
    limit = livedata_settings().WEBHOOK_MAX_BATCH
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= limit:
        raise ApiError(400, f"batch must be an integer from 1 to {limit}", field="batch")
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise ApiError(400, "active must be true or false", field="active")
    values = {
        "url": url,
        "model_labels": selection.labels,
        "operations": list(selection.operations),
        "filter": body.get("filter") or {},
        "fields": body.get("fields"),
        "batch": batch,
        "state": Subscription.State.ACTIVE if active else Subscription.State.DISABLED,
        "disabled_reason": "" if active else "disabled by its owner",
        "attempts": 0,
        "next_attempt_at": None,
        "updated": timezone.now(),
    }
    with transaction.atomic():
        sub = (
            Subscription.objects.select_for_update()
            .filter(owner=request.api_user, name=name)
            .first()
        )
        created = sub is None
        if created:
            count = Subscription.objects.filter(owner=request.api_user).count()
            if count >= livedata_settings().WEBHOOK_MAX_SUBSCRIPTIONS:
                raise ApiError(409, f"you already have {count} subscriptions, the most allowed")
            sub = Subscription(owner=request.api_user, name=name, secret=signing.new_secret())
            sub.log_position = log.head(connection)  # only changes committed from now on
        if secret is not None:
            sub.secret = secret
        for key, value in values.items():
            setattr(sub, key, value)
        sub.save()
        transaction.on_commit(_poke)
    return _json(represent(sub), status=201 if created else 200)


def represent(sub: Subscription, *, secret: bool = True) -> dict[str, Any]:
    """The subscription as the API shows it, with its state."""
    out: dict[str, Any] = {
        "name": sub.name,
        "url": sub.url,
        "models": sub.model_labels,
        "operations": sub.operations,
        "filter": sub.filter,
        "fields": sub.fields,
        "batch": sub.batch,
    }
    if secret:
        out["secret"] = sub.secret
    out.update(
        {
            "state": sub.state,
            "disabled_reason": sub.disabled_reason or None,
            **_position(sub),
            "delivered": sub.delivered,
            "attempts": sub.attempts,
            "next_attempt": _iso(sub.next_attempt_at),
            "last_success": _iso(sub.last_success_at),
            "last_error": {
                "at": _iso(sub.last_error_at),
                "status": sub.last_status,
                "message": sub.last_error,
            }
            if sub.last_error_at
            else None,
            "created": _iso(sub.created),
            "updated": _iso(sub.updated),
        }
    )
    return out


def _position(sub: Subscription) -> dict[str, Any]:
    """The position, and how far behind it is: pending changes (capped) and their age.

    Pending: the committed rows of its models that the position has not received, i.e.
    of transactions its snapshot does not see (``xip``, or from ``xmax`` on: both use
    the txid index), less those of a step begun, up to the position's last row id.
    """
    position = sub.log_position
    snap = position.snapshot
    until = position.until
    with connection.cursor() as cur:
        cur.execute(
            f"""
            SELECT count(*), min(at) FROM (
                SELECT at FROM {log.LOG_TABLE}
                WHERE (txid >= %(xmax)s::text::xid8
                       OR txid = ANY(%(xip)s::text[]::xid8[]))
                  AND NOT (%(until)s::pg_snapshot IS NOT NULL
                           AND pg_visible_in_snapshot(txid, %(until)s::pg_snapshot)
                           AND id <= %(last_id)s)
                  AND model = ANY(%(models)s)
                LIMIT %(cap)s
            ) pending
            """,
            {
                "xmax": str(snap.xmax),
                "xip": [str(x) for x in snap.xip],
                "until": None if until is None else str(until),
                "last_id": position.last_id,
                "models": list(sub.model_labels),
                "cap": LAG_CAP + 1,
            },
        )
        count, oldest = cur.fetchone()
    seconds = (timezone.now() - oldest).total_seconds() if oldest else 0.0
    return {
        "position": str(position),
        "lag": {
            "changes": min(count, LAG_CAP),
            "more": count > LAG_CAP,
            "seconds": round(max(seconds, 0.0), 3),
        },
    }


def _resolve_position(value: Any) -> Position:
    """``"now"``, ``"start"`` (the oldest kept change), a position (the text form, or an
    old ``TXID:ID`` cursor) or an ISO time; an expired position is a 409."""
    if value == "now":
        return log.head(connection)
    horizon = log.horizon(connection)
    oldest = Position.oldest_at(horizon)
    if value == "start":
        return oldest
    if not isinstance(value, str):
        raise ApiError(400, '"from" is "now", "start", a position or an ISO time', field="from")
    try:
        position = Position.parse(value)
    except PositionError:
        when = parse_datetime(value.strip())
        if when is None:
            raise ApiError(
                400,
                f"{value!r} is not a position (as in the 'position' field, or an old "
                "TXID:ID cursor) or an ISO 8601 time",
                field="from",
            ) from None
        if timezone.is_naive(when):
            when = when.replace(tzinfo=UTC)
        with connection.cursor() as cur:
            # the first transaction with a change at or after `when` (a change's time is
            # its transaction's start): it and every later transaction are delivered
            cur.execute(
                f"SELECT txid::text::bigint FROM {log.LOG_TABLE} WHERE at >= %s "
                "ORDER BY txid LIMIT 1",
                [when],
            )
            first = cur.fetchone()
        if first is None:
            return log.head(connection)
        txid = int(first[0])
        if horizon is not None and txid < horizon:
            return oldest
        return Position(Snapshot(txid, txid))
    if position.lost_below(horizon):
        raise ApiError(
            409,
            f"position {position} is older than the oldest kept change (transactions "
            f'below {horizon} were pruned): use "start" or a later position',
            field="from",
            code="cursor-expired",
        )
    return position


def _check_url(url: Any) -> str:
    """A valid http(s) URL whose host is not refused (see ``addresses``): IP literals in
    every notation, ``localhost`` names, and names resolving to refused addresses now.
    The connect-time check stays the guard (a name may resolve differently later)."""
    if not isinstance(url, str) or not url:
        raise ApiError(400, "url is required: the http(s) URL to PUT changes to", field="url")
    if len(url) > 2000:
        raise ApiError(400, "url is longer than 2000 characters", field="url")
    allowed = livedata_settings().WEBHOOK_ALLOWED_NETWORKS
    hosts = _hosts(url)
    for host in hosts:  # before the URL validator, so every notation gets this answer
        ip = addresses.parse_host(host)
        if ip is None and addresses.is_loopback_name(host):
            ip = ipaddress.IPv4Address("127.0.0.1")
        problem = addresses.refusal(ip, allowed) if ip is not None else None
        if problem:
            named = host if str(ip) == host.strip("[]").lower() else f"{host!r} ({ip})"
            raise ApiError(400, f"the host {named}: {problem}", field="url")
    try:
        _url_validator(url)
    except ValidationError:
        raise ApiError(400, f"{url!r} is not a valid http(s) URL", field="url") from None
    split = urlsplit(url)
    host = split.hostname or ""
    if addresses.parse_host(host) is None and not addresses.is_loopback_name(host):
        port = split.port or (443 if split.scheme == "https" else 80)
        timeout = min(2.0, livedata_settings().WEBHOOK_CONNECT_TIMEOUT)
        problem = addresses.resolved_refusal(host, port, allowed, timeout)
        if problem:
            raise ApiError(400, problem, field="url")
    return url


def _hosts(url: str) -> list[str]:
    """The URL's host as Python's parser and as the delivery client (yarl, which also
    IDNA-maps: ``①②⑦.0.0.1`` is 127.0.0.1) read it; they may differ."""
    import yarl

    out = []
    with contextlib.suppress(ValueError):
        out.append(urlsplit(url).hostname or "")
    with contextlib.suppress(ValueError, TypeError, UnicodeError):
        out.append(yarl.URL(url).host or "")
    return [h for h in dict.fromkeys(out) if h]


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ApiError(
            400,
            "a subscription name is 1-100 letters, digits, '.', '_' or '-'",
            field="name",
        )


def _get(request: Any, name: str, *, lock: bool = False) -> Subscription:
    qs = Subscription.objects.filter(owner=request.api_user, name=name)
    sub = (qs.select_for_update() if lock else qs).first()
    if sub is None:
        raise ApiError(404, f"you have no subscription named {name!r}")
    return sub


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _json(data: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _poke() -> None:
    """Let this process's delivery workers see the change now, not at their next reload."""
    from livedata.webhooks.dispatcher import poke_all

    poke_all()
