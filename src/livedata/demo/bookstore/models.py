from django.conf import settings
from django.db import models

import livedata


@livedata.track
class Author(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)

    class Meta:
        db_table = "livedata_demo_author"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


@livedata.track
class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    #: who added it over DDP (the per-user publication MyBooks shows a user's own)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        db_table = "livedata_demo_book"
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title
