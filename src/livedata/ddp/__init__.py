"""The DDP protocol itself, sans-I/O: no sockets, no database, no asyncio.

- ``ejson``: EJSON encoding and decoding, with Django's value types.
- ``errors``: ``DDPError`` (Meteor.Error on the wire) and how exceptions are sanitised.
- ``messages``: parsing client frames and serialising server messages exactly as Meteor.
- ``connection``: the per-connection state machine (negotiation, sessions, ping/pong,
  heartbeats, sub/unsub/method validation). Feed it text frames, get back the actions to
  run and the frames to send, like h11/wsproto.

Meteor's behaviour these follow is summarised, with sources, in docs/ddp-wire-reference.md.
"""
