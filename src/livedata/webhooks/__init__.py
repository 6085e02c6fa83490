"""Webhooks: services subscribe over HTTP and get a signed PUT per committed change.

This part owns the ``Subscription`` and ``Delivery`` models, the subscription API
(``views``, mounted by ``livedata.urls``), what a subscription selects and the payload it
is sent (``selection``), Standard Webhooks signing and verifying (``signing``), the
outgoing HTTP with its address guard (``transport``, ``addresses``), the delivery engine:
``dispatcher`` (claims subscriptions, feeds their runners), ``runner`` (one
subscription's ordered delivery and retries), ``progress`` (writing positions and the
delivery log back) and ``worker`` (running it in ``livedata serve`` and
``livedata deliver``); the receiver helper for Django projects (``receiver``) and the
admin. Changes come only from the change log
(``livedata.capture.log``), each subscription from its own durable position.
"""
