"""Where ``livedata mirror`` keeps its position in the source's feed.

Written in the same transaction as the mirrored rows, so after a crash the mirror resumes
exactly where its last committed batch ended.
"""

from __future__ import annotations

from django.db import models


class MirrorPosition(models.Model):
    """One mirror's handle and offset in a remote pull feed, with its progress."""

    name = models.CharField(primary_key=True, max_length=255, help_text="source → target")
    source = models.TextField(help_text="Feed URL the mirror reads")
    target = models.CharField(max_length=200, help_text="Local model label")
    handle = models.TextField(blank=True, help_text="The feed's handle (empty: not started)")
    offset = models.TextField(default="-1", help_text="Next offset to ask for")
    phase = models.CharField(max_length=10, default="snapshot")
    snapshot_rows = models.BigIntegerField(default=0, help_text="Rows copied by the snapshot")
    estimate = models.BigIntegerField(null=True, help_text="Rows the source expected")
    changes = models.BigIntegerField(default=0, help_text="Changes applied after the snapshot")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "livedata_mirror_position"

    def __str__(self) -> str:
        return f"{self.name} at {self.offset}"
