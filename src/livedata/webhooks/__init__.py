"""Webhooks: services subscribe over HTTP and get a signed PUT per committed change.

This part owns the ``Subscription`` and ``Delivery`` models, the subscription API
(``views``, mounted by ``livedata.urls``), what a subscription selects and the payload it
is sent (``selection``), Standard Webhooks signing and verifying (``signing``), the
outgoing HTTP with its address guard (``transport``, ``addresses``), the delivery engine:
``state`` (one subscription's delivery state as a pure core: offer, next request, on
result, progress to write), ``store`` (every statement: claiming, reading, writing
positions and the delivery log back), ``owners`` (whether an owner may still receive
what it selects), ``runner`` and ``dispatcher`` (the drivers: one subscription's
sending and waiting; claiming subscriptions and feeding their runners) and ``worker``
(running it in ``livedata serve`` and ``livedata deliver``); the receiver helper for
Django projects (``receiver``) and the admin. Changes come only from the change log
(``livedata.capture.log``), each subscription from its own durable position.
"""
