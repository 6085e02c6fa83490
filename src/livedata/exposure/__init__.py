"""What a model exposes, in one place, for every channel: DDP, webhooks and pull.

A model is reachable only through its ``Collection``; this package owns that model of
exposure, and DDP (``livedata.publish``), webhooks (``livedata.webhooks``) and the pull
feed (``livedata.pull``) all read it from here instead of each keeping its own copy:

- ``collection``: ``Collection`` (published fields, renames, exclusions, which channels
  and filters are allowed, audit context), ``SECRET_FIELDS``, the published columns and
  narrowing them to the fields a client asked for;
- ``registry``: the registered Collections, and which are exposed on a channel;
- ``filters``: which lookups a service's filter may use and checking it, with one error
  text per mistake whatever the channel;
- ``lookups``: the values each lookup accepts;
- ``matching``: deciding from a logged row alone, in memory, whether it matches a filter;
- ``joins``: the same for querysets filtering through foreign keys, given the joined
  rows (their ``JoinPlan``; the live-query engine keeps the rows).

Layer: above ``capture`` and ``ddp`` (errors), below ``publish``, ``webhooks`` and ``pull``;
it imports none of them, nor the server, and does no I/O beyond Django's model metadata.
"""

from livedata.exposure.collection import SECRET_FIELDS, Collection, ExposureError

__all__ = ["SECRET_FIELDS", "Collection", "ExposureError"]
