"""The dashboard's table of live processes (``livedata.dashboard.cluster``).

UNLOGGED: its rows are a few seconds' figures, rewritten every ``DASHBOARD_INTERVAL``
while a page is open; nothing is lost that matters if a crash empties it, and its writes
skip the WAL. No model: the SQL is ``cluster``'s own.
"""

from django.db import migrations

CREATE = """
CREATE UNLOGGED TABLE livedata_dashboard_process (
    process text PRIMARY KEY,
    figures jsonb NOT NULL,
    at timestamptz NOT NULL
)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("livedata", "0010_dashboard"),
    ]

    operations = [
        migrations.RunSQL(CREATE, "DROP TABLE livedata_dashboard_process"),
    ]
