"""Webhook positions (0.2): subscriptions and deliveries store log positions as text.

- ``Subscription.cursor_txid``/``cursor_id`` become ``position``: the old ``TXID:ID``
  cursor is ``Position.from_cursor(txid, id)`` (transactions below ``txid`` received,
  and ``txid``'s rows up to ``id``). When ``txid`` has no row with a higher id (it was
  received in full: the usual case, and always for the synthetic ``(txid, MAX)``
  cursors of a caught-up worker), the equivalent complete position
  ``Snapshot(txid + 1, txid + 1)`` is stored instead; ``0:0`` (the whole log) is
  ``START``.
- ``Delivery.cursor`` (a ``TXID:ID`` of at most 50 characters) becomes the text
  ``position``, converted the same way in one statement (the delivery log may be large).
  New rows record the subscription's position once the delivery is acknowledged; old rows
  keep what they recorded, the cursor of the delivery's first change.

Going back is safe, not exact: a position becomes the newest old cursor it has received
everything up to (``xmin - 1``), so an old worker may deliver some changes again.
"""

from django.db import migrations, models

from livedata.capture.position import START, Position, Snapshot

MAX_ID = 2**63 - 1


def _convert(txid: int, last_id: int, more: bool) -> str:
    if txid < 1:
        return str(START)
    if more:
        return str(Position.from_cursor(txid, last_id))
    return str(Position(Snapshot(txid + 1, txid + 1)))


def forward(apps, schema_editor):
    Subscription = apps.get_model("livedata", "Subscription")
    db = schema_editor.connection.alias
    with schema_editor.connection.cursor() as cur:
        for sub in Subscription.objects.using(db).only("id", "cursor_txid", "cursor_id"):
            cur.execute(
                "SELECT EXISTS (SELECT 1 FROM livedata_change "
                "WHERE txid = %s::text::xid8 AND id > %s)",
                [str(max(sub.cursor_txid, 0)), sub.cursor_id],
            )
            more = bool(cur.fetchone()[0])
            position = _convert(sub.cursor_txid, sub.cursor_id, more)
            Subscription.objects.using(db).filter(pk=sub.pk).update(position=position)
        # the same conversion as _convert, in SQL
        cur.execute(
            """
            WITH old AS (
                SELECT d.id, split_part(d.cursor, ':', 1)::bigint AS t,
                       split_part(d.cursor, ':', 2)::bigint AS i
                FROM livedata_webhook_delivery d WHERE d.cursor ~ '^[0-9]+:[0-9]+$'
            )
            UPDATE livedata_webhook_delivery d SET position = CASE
                WHEN old.t < 1 THEN %s
                WHEN EXISTS (SELECT 1 FROM livedata_change c
                             WHERE c.txid = old.t::text::xid8 AND c.id > old.i)
                THEN old.t || ':' || old.t || ':/' || (old.t + 1) || ':' || (old.t + 1)
                     || ':/' || old.i
                ELSE (old.t + 1) || ':' || (old.t + 1) || ':'
            END
            FROM old WHERE d.id = old.id
            """,
            [str(START)],
        )


def backward(apps, schema_editor):
    Subscription = apps.get_model("livedata", "Subscription")
    db = schema_editor.connection.alias
    for sub in Subscription.objects.using(db).only("id", "position"):
        position = Position.parse(sub.position)
        until = position.until
        if until is not None and position.snapshot == Snapshot(until.xmin - 1, until.xmin - 1):
            txid, last_id = position.snapshot.xmin, position.last_id  # a from_cursor one
        else:
            txid, last_id = position.snapshot.xmin - 1, MAX_ID
        Subscription.objects.using(db).filter(pk=sub.pk).update(
            cursor_txid=max(txid, 0), cursor_id=last_id if txid > 0 else 0
        )
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "UPDATE livedata_webhook_delivery SET cursor = "
            "(split_part(position, ':', 1)::bigint - 1) || ':' || %s "
            "WHERE position ~ '^[0-9]+:'",
            [str(MAX_ID)],
        )


class Migration(migrations.Migration):
    dependencies = [("livedata", "0005_log_marks")]

    operations = [
        migrations.AddField(
            model_name="subscription",
            name="position",
            field=models.TextField(default=str(START), help_text="Log position (a snapshot)"),
        ),
        migrations.AddField(
            model_name="delivery",
            name="position",
            field=models.TextField(
                blank=True,
                help_text="The subscription's position once this delivery is acknowledged",
            ),
        ),
        migrations.AlterField(
            model_name="subscription",
            name="attempts",
            field=models.PositiveIntegerField(
                default=0, help_text="Failed attempts at the change after the position"
            ),
        ),
        migrations.RunPython(forward, backward),
        migrations.RemoveField(model_name="subscription", name="cursor_txid"),
        migrations.RemoveField(model_name="subscription", name="cursor_id"),
        migrations.RemoveField(model_name="delivery", name="cursor"),
    ]
