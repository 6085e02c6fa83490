"""Accounts: who a DDP connection or an HTTP API caller is.

Owns the login tokens (Meteor's resume tokens, also accepted as HTTP bearer tokens by the
webhook and pull APIs), stored only as hashes, with an expiry; the DDP login methods
(Meteor ``accounts-password`` compatible) build on them.
"""
