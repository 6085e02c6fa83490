"""Snapshot-difference reading (0.2): marks for pruning, the horizon as one xid.

The old horizon ``(txid, last_id)`` (the newest pruned row, when only finished
transactions were read) becomes ``txid + 1``: every transaction up to it may have lost
rows. The first mark is taken now, so rows committed before this migration become
prunable one retention period after it (marks only ever look back).
"""

import django.db.models.functions.datetime
import livedata.capture.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("livedata", "0004_webhooks")]

    operations = [
        migrations.CreateModel(
            name="LogMark",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "taken_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
                (
                    "snapshot",
                    livedata.capture.models.SnapshotField(
                        db_default=models.Func(function="pg_current_snapshot")
                    ),
                ),
            ],
            options={
                "db_table": "livedata_log_mark",
                "indexes": [models.Index(fields=["taken_at"], name="livedata_log_mark_at")],
            },
        ),
        migrations.RunSQL(
            sql=[
                "UPDATE livedata_log_horizon SET txid = (txid::text::bigint + 1)::text::xid8, last_id = 0",
                "INSERT INTO livedata_log_mark (taken_at, snapshot) VALUES (now(), pg_current_snapshot())",
            ],
            reverse_sql=[
                "UPDATE livedata_log_horizon SET txid = (txid::text::bigint - 1)::text::xid8, last_id = 9223372036854775807",
            ],
        ),
    ]
