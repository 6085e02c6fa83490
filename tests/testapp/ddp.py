"""DDP methods used by the server tests (discovered like any app's ddp.py)."""

from __future__ import annotations

import asyncio

from django.core.exceptions import PermissionDenied, ValidationError

from livedata.ddp.errors import DDPError
from livedata.publish.methods import method
from tests.testapp.models import Note


@method(name="test.echo")
def echo(call, *args):
    return {"args": list(args), "seed": call.random_seed, "session": call.connection.id}


@method(name="test.fail")
def fail(call, kind: str):
    if kind == "ddp":
        raise DDPError("custom-code", "You asked for it", {"why": "test"})
    if kind == "validation":
        raise ValidationError({"title": ["This field is required."]})
    if kind == "permission":
        raise PermissionDenied("Not yours")
    raise RuntimeError("secret internal detail")


@method(name="test.writeNote")
def write_note(call, text: str):
    return Note.objects.create(text=text).pk


@method(name="test.rollback")
def rollback(call, text: str):
    Note.objects.create(text=text)
    raise DDPError(409, "rolled back")


@method(name="test.sleep")
async def sleep(call, seconds: float):
    await asyncio.sleep(seconds)
    return seconds


@method(name="test.big")
def big(call, size: int):
    return "x" * size
