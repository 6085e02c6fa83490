"""Method rate limits, fed with times: Meteor's rule, counted per bucket, its error."""

from __future__ import annotations

import pytest

from livedata.ddp.ratelimit import RateLimiter, Rule


def limiter() -> RateLimiter:
    return RateLimiter(
        [
            Rule.from_setting(
                {"methods": ["login"], "per": "connection", "calls": 5, "seconds": 10}
            ),
            Rule.from_setting(
                {"methods": "login", "per": "client_address", "calls": 8, "seconds": 10}
            ),
        ]
    )


def call(rl: RateLimiter, now: float, conn: str = "c1", addr: str = "10.0.0.1", method="login"):
    return rl.check(method, now, connection=conn, client_address=addr, user=None)


def test_sixth_call_in_the_window_is_refused_with_meteors_error():
    rl = limiter()
    assert [call(rl, t / 10) for t in range(5)] == [None] * 5
    error = call(rl, 1.0)
    assert error.error == "too-many-requests"
    assert error.details == {"timeToReset": 9000}
    assert error.reason == (
        "Error, too many requests. Please slow down. You must wait 9 seconds before trying again."
    )
    assert call(rl, 9.9) is not None  # refused calls count too, the window stays
    assert call(rl, 10.0) is None  # a new window


def test_buckets_are_per_connection_and_per_address_and_per_method():
    rl = limiter()
    for _ in range(5):
        assert call(rl, 0, conn="a") is None
    assert call(rl, 0, conn="b") is None  # another connection has its own budget...
    assert call(rl, 0, conn="c") is None
    assert call(rl, 0, conn="d") is None
    assert call(rl, 0, conn="e") is not None  # ...but the address allows 8 in all
    assert call(rl, 0, conn="e", addr="10.0.0.2") is None
    assert call(rl, 0, conn="a", method="hello") is None  # not a covered method


def test_bad_rules_are_refused_with_the_reason():
    for spec, words in [
        ({"per": "connection", "calls": 1, "seconds": 1}, "methods"),
        ({"methods": ["x"], "per": "planet", "calls": 1, "seconds": 1}, "per"),
        ({"methods": ["x"], "calls": 0, "seconds": 1}, "calls"),
    ]:
        with pytest.raises(ValueError, match=words):
            Rule.from_setting(spec)


def test_expired_buckets_are_pruned():
    rl = limiter()
    rl.MAX_BUCKETS = 10
    for i in range(20):
        call(rl, 0, conn=str(i), addr=str(i))
    call(rl, 11, conn="new", addr="new")
    assert len(rl._buckets) <= 4


def test_refund_gives_a_counted_call_back_in_its_window():
    rl = limiter()
    for t in range(5):
        assert call(rl, t / 10) is None
        rl.refund("login", t / 10, connection="c1", client_address="10.0.0.1", user=None)
    assert [call(rl, 1 + t / 10) for t in range(5)] == [None] * 5  # refunded: room again
    assert call(rl, 1.6) is not None
    rl.refund("login", 11.0, connection="c1", client_address="10.0.0.1", user=None)  # new window
    assert call(rl, 11.0) is None


def test_rules_a_method_declares_count_besides_the_settings():
    rl = limiter()
    own = [Rule.for_method("addBook", {"per": "user", "calls": 2, "seconds": 10})]

    def add(now: float, user: object = 7) -> object:
        return rl.check("addBook", now, connection="c", client_address="a", user=user, own=own)

    assert add(0) is None and add(1) is None
    assert add(2).error == "too-many-requests"
    assert add(3, user=8) is None  # per user
    assert add(3, user=None) is None  # no user: the rule does not apply (login_required does)
    assert add(10) is None  # a new window


def test_bad_method_rules_fail_at_registration():
    from livedata.publish.methods import MethodRegistry

    registry = MethodRegistry()
    for spec, words in [
        ({"per": "planet", "calls": 1, "seconds": 1}, "per"),
        ({"methods": ["other"], "calls": 1, "seconds": 1}, "the method itself"),
        ("5 per second", "a dict"),
        ({"calls": 0, "seconds": 1}, "calls"),
    ]:
        with pytest.raises(ValueError, match=words):
            registry.register(lambda call: None, name="m", rate_limits=[spec])
    method = registry.register(lambda call: None, name="m", rate_limits={"calls": 1, "seconds": 1})
    assert method.rate_limits == (Rule(frozenset({"m"}), "connection", 1, 1.0),)
