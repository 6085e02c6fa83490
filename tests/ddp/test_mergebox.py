"""Meteor's session-view test cases (livedata_server session_view_tests), ported."""

from __future__ import annotations

import pytest

from livedata.ddp.mergebox import Mergebox, ejson_equals, message_for
from livedata.ddp.messages import UNDEFINED

U = UNDEFINED


class View:
    """Meteor's test harness: record added/changed/removed for collection 'c'."""

    def __init__(self) -> None:
        self.box = Mergebox()
        self.log: list[tuple] = []

    def _record(self, messages: list[dict]) -> None:
        for m in messages:
            if m["msg"] == "added":
                self.log.append(("added", m["id"], m["fields"]))
            elif m["msg"] == "changed":
                self.log.append(("changed", m["id"], m["fields"]))
            else:
                self.log.append(("removed", m["id"]))

    def added(self, sub, doc_id, fields):
        self._record(self.box.added(sub, "c", doc_id, fields))

    def changed(self, sub, doc_id, fields):
        self._record(self.box.changed(sub, "c", doc_id, fields))

    def removed(self, sub, doc_id):
        self._record(self.box.removed(sub, "c", doc_id))

    def expect(self, *entries):
        assert self.log == list(entries)
        self.log.clear()


@pytest.fixture
def v() -> View:
    return View()


def test_exists_reveal(v):
    v.added("A", "A1", {})
    v.expect(("added", "A1", {}))
    v.added("B", "A1", {})
    v.expect()
    v.removed("A", "A1")
    v.expect()
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_added_a_second_field_in_another_sub(v):
    v.added("A", "A1", {"a": "foo"})
    v.expect(("added", "A1", {"a": "foo"}))
    v.added("B", "A1", {"a": "foo", "b": "bar"})
    v.expect(("changed", "A1", {"b": "bar"}))
    v.removed("A", "A1")
    v.expect()
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_field_reveal(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.added("B", "A1", {"foo": "baz"})
    v.expect()
    v.removed("A", "A1")
    v.expect(("changed", "A1", {"foo": "baz"}))
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_field_change(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.changed("A", "A1", {"foo": "baz"})
    v.expect(("changed", "A1", {"foo": "baz"}))
    v.removed("A", "A1")
    v.expect(("removed", "A1"))


def test_field_clear(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.changed("A", "A1", {"foo": U})
    v.expect(("changed", "A1", {"foo": U}))
    v.removed("A", "A1")
    v.expect(("removed", "A1"))


def test_change_makes_a_new_field(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.changed("A", "A1", {"baz": "quux"})
    v.expect(("changed", "A1", {"baz": "quux"}))


def test_add_remove_add(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.removed("A", "A1")
    v.expect(("removed", "A1"))
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))


def test_field_clear_reveal(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.added("B", "A1", {"foo": "baz"})
    v.expect()
    v.changed("A", "A1", {"foo": U})
    v.expect(("changed", "A1", {"foo": "baz"}))
    v.removed("A", "A1")
    v.expect()
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_change_to_canonical_value_produces_no_change(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.added("B", "A1", {"foo": "baz"})
    v.expect()
    v.changed("B", "A1", {"foo": "bar"})
    v.expect()
    v.removed("A", "A1")
    v.expect()
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_new_field_of_canonical_value_produces_no_change(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.added("B", "A1", {})
    v.expect()
    v.changed("B", "A1", {"foo": "bar"})
    v.expect()
    v.removed("A", "A1")
    v.expect()
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_clear_all_clears_only_once(v):
    for sub in "ABC":
        v.added(sub, "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    for sub in "ABC":
        v.changed(sub, "A1", {"foo": U})
    v.expect(("changed", "A1", {"foo": U}))


def test_change_all_changes_only_once(v):
    for sub in "ABC":
        v.added(sub, "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.changed("B", "A1", {"foo": "baz"})
    v.changed("A", "A1", {"foo": "baz"})
    v.changed("C", "A1", {"foo": "baz"})
    v.expect(("changed", "A1", {"foo": "baz"}))


def test_multiple_operations_at_once_in_a_change(v):
    v.added("A", "A1", {"foo": "bar", "baz": "quux"})
    v.expect(("added", "A1", {"foo": "bar", "baz": "quux"}))
    v.added("B", "A1", {"foo": "baz"})
    v.expect()
    v.changed("A", "A1", {"thing": "stuff", "foo": U, "baz": U})
    v.expect(("changed", "A1", {"foo": "baz", "thing": "stuff", "baz": U}))
    v.removed("A", "A1")
    v.expect(("changed", "A1", {"thing": U}))
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_more_than_one_document(v):
    v.added("A", "A1", {"foo": "bar", "baz": "quux"})
    v.expect(("added", "A1", {"foo": "bar", "baz": "quux"}))
    v.added("A", "A2", {"foo": "baz"})
    v.expect(("added", "A2", {"foo": "baz"}))
    v.changed("A", "A1", {"thing": "stuff", "foo": U, "baz": U})
    v.expect(("changed", "A1", {"thing": "stuff", "foo": U, "baz": U}))
    v.changed("A", "A2", {"foo": "quux"})
    v.expect(("changed", "A2", {"foo": "quux"}))
    v.removed("A", "A1")
    v.expect(("removed", "A1"))
    v.removed("A", "A2")
    v.expect(("removed", "A2"))


def test_multiple_docs_removed(v):
    v.added("A", "A1", {"foo": "bar", "baz": "quux"})
    v.added("A", "A2", {"foo": "baz"})
    v.expect(("added", "A1", {"foo": "bar", "baz": "quux"}), ("added", "A2", {"foo": "baz"}))
    v.removed("A", "A1")
    v.removed("A", "A2")
    v.expect(("removed", "A1"), ("removed", "A2"))


def test_complicated_sequence(v):
    v.added("A", "A1", {"foo": "bar", "baz": "quux"})
    v.added("A", "A2", {"foo": "eats"})
    v.added("B", "A1", {"foo": "baz"})
    v.expect(("added", "A1", {"foo": "bar", "baz": "quux"}), ("added", "A2", {"foo": "eats"}))
    v.changed("A", "A1", {"thing": "stuff", "foo": U, "baz": U})
    v.expect(("changed", "A1", {"foo": "baz", "thing": "stuff", "baz": U}))
    v.removed("A", "A1")
    v.expect(("changed", "A1", {"thing": U}))
    v.removed("A", "A2")
    v.expect(("removed", "A2"))
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_added_becomes_changed(v):
    v.added("A", "A1", {"foo": "bar"})
    v.expect(("added", "A1", {"foo": "bar"}))
    v.added("B", "A1", {"hi": "there"})
    v.expect(("changed", "A1", {"hi": "there"}))
    v.removed("A", "A1")
    v.expect(("changed", "A1", {"foo": U}))
    v.removed("B", "A1")
    v.expect(("removed", "A1"))


def test_weird_key_names(v):
    v.added("A", "A1", {})
    v.expect(("added", "A1", {}))
    v.changed("A", "A1", {"constructor": "bla"})
    v.expect(("changed", "A1", {"constructor": "bla"}))


def test_clear_undefined_value(v):
    v.added("A", "A1", {"field": "value"})
    v.expect(("added", "A1", {"field": "value"}))
    v.changed("A", "A1", {"field": U})
    v.expect(("changed", "A1", {"field": U}))
    v.changed("A", "A1", {"field": U})
    v.expect()


def test_unsub_retracts_exactly_what_only_it_provided():
    box = Mergebox()
    box.added("A", "books", "1", {"title": "T"})
    box.added("B", "books", "1", {"title": "T", "year": 1994})
    box.added("A", "books", "2", {"title": "U"})
    out = box.remove_subscription("A")
    assert out == [{"msg": "removed", "collection": "books", "id": "2"}]
    assert box.document("books", "1") == {"title": "T", "year": 1994}
    assert box.remove_subscription("B") == [{"msg": "removed", "collection": "books", "id": "1"}]
    assert box.collections == {} and box.provided == {}
    assert box.remove_subscription("never") == []


def test_errors_for_unknown_documents():
    box = Mergebox()
    with pytest.raises(KeyError, match="to change"):
        box.changed("A", "c", "x", {"a": 1})
    with pytest.raises(KeyError, match="nonexistent"):
        box.removed("A", "c", "x")


def test_ejson_equals():
    assert ejson_equals(float("nan"), float("nan"))
    assert ejson_equals(1, 1.0) and not ejson_equals(True, 1)
    assert ejson_equals({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]})
    assert not ejson_equals({"a": 1}, {"a": 1, "b": 2}) and not ejson_equals("1", 1)


def test_diff_to_sends_only_what_differs():
    before, after = Mergebox(), Mergebox()
    before.added("a", "books", "1", {"title": "Same"})
    before.added("a", "books", "2", {"title": "Old", "price": 3})
    before.added("a", "books", "3", {"title": "Gone"})
    after.added("b", "books", "1", {"title": "Same"})
    after.added("b", "books", "2", {"title": "New"})
    after.added("b", "users", "7", {"username": "demo"})
    assert sorted(before.diff_to(after), key=lambda m: (m["collection"], m["id"])) == [
        {
            "msg": "changed",
            "collection": "books",
            "id": "2",
            "fields": {"title": "New", "price": UNDEFINED},
        },
        {"msg": "removed", "collection": "books", "id": "3"},
        {"msg": "added", "collection": "users", "id": "7", "fields": {"username": "demo"}},
    ]


class FullViews(Mergebox):
    COMPACT = False  # Meteor's structure as ported: the reference


def _steps(subs, ids, keys, values):
    """Hypothesis strategy: one step of a random mergebox sequence (added, changed,
    removed, or a subscription's end), over the given subscriptions, ids and keys."""
    from hypothesis import strategies as st

    return st.one_of(
        st.tuples(
            st.just("added"),
            st.sampled_from(subs),
            st.sampled_from(ids),
            st.dictionaries(st.sampled_from(keys), values.filter(lambda v: v is not UNDEFINED)),
        ),
        st.tuples(
            st.just("changed"),
            st.sampled_from(subs),
            st.sampled_from(ids),
            st.dictionaries(st.sampled_from(keys), values),
        ),
        st.tuples(st.just("removed"), st.sampled_from(subs), st.sampled_from(ids), st.none()),
        st.tuples(st.just("unsub"), st.sampled_from(subs), st.none(), st.none()),
    )


def _step(box: Mergebox, step) -> object:
    """Apply one step through the mergebox's general entry points."""
    kind, sub, doc_id, fields = step
    try:
        if kind == "unsub":
            return box.remove_subscription(sub)
        if kind == "removed":
            return box.removed(sub, "c", doc_id)
        return getattr(box, kind)(sub, "c", doc_id, fields)
    except KeyError:
        return "KeyError"


def test_compact_documents_behave_exactly_like_full_views():
    """Random add/change/remove/unsubscribe sequences: same messages, same documents."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    subs, ids, keys = ["A", "B", "C"], ["1", "2"], ["x", "y", "_id"]
    values = st.one_of(st.integers(0, 2), st.sampled_from(["a", "b"]), st.just(UNDEFINED))
    op = _steps(subs, ids, keys, values)

    @settings(max_examples=400, deadline=None)
    @given(st.lists(op, max_size=25))
    def check(steps) -> None:
        compact, full = Mergebox(), FullViews()
        for step in steps:
            assert _step(compact, step) == _step(full, step), step
            for doc_id in ids:
                assert compact.document("c", doc_id) == full.document("c", doc_id)

    check()


def test_apply_agrees_with_the_full_views_and_says_when_the_shared_message_is_exact():
    """``apply`` (encode once, send many): for random sequences it gives the full views'
    messages, and None exactly when they are the one shared ``message_for`` the change."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    nan = float("nan")  # one object: equal to itself in the lists compared below
    subs, ids, keys = ["A", "B"], ["1", "2"], ["x", "y", "_id"]
    values = st.one_of(
        st.integers(0, 2),
        st.sampled_from(["a", "b", True, 1.0, nan]),
        st.just(UNDEFINED),
    )
    op = _steps(subs, ids, keys, values)

    @settings(max_examples=400, deadline=None)
    @given(st.lists(op, max_size=25))
    def check(steps) -> None:
        compact, full = Mergebox(), FullViews()
        for step in steps:
            kind, sub, doc_id, fields = step
            expected = _step(full, step)
            if kind == "unsub":
                got = _step(compact, step)
            else:
                try:
                    got = compact.apply(sub, "c", kind, doc_id, fields)
                except KeyError:
                    got = "KeyError"
                if got is None:
                    got = [message_for("c", kind, doc_id, fields)]
            assert got == expected, step
            for i in ids:  # ejson_equals: a pickled NaN is another NaN object
                a, b = compact.document("c", i), full.document("c", i)
                assert a == b if a is None or b is None else ejson_equals(a, b)

    check()


def test_apply_takes_the_shared_message_for_a_documents_only_provider():
    box = Mergebox()
    assert box.apply("A", "c", "added", "1", {"x": 1, "y": 2}) is None
    assert box.apply("A", "c", "changed", "1", {"x": 5, "y": U}) is None
    assert box.document("c", "1") == {"x": 5}
    # a field that does not visibly change: this client's own, smaller diff
    assert box.apply("A", "c", "changed", "1", {"x": 5, "z": 1}) == [
        {"msg": "changed", "collection": "c", "id": "1", "fields": {"z": 1}}
    ]
    # another subscription provides it too: Meteor's merge, not the shared message
    assert box.apply("B", "c", "added", "1", {"x": 6}) == []
    assert box.apply("A", "c", "removed", "1", None) == [
        {"msg": "changed", "collection": "c", "id": "1", "fields": {"x": 6, "z": U}}
    ]
    assert box.apply("B", "c", "removed", "1", None) is None  # B alone again: shared
    assert box.apply("A", "c", "added", "2", {"_id": "2", "x": 1}) == [
        {"msg": "added", "collection": "c", "id": "2", "fields": {"x": 1}}
    ]
    with pytest.raises(KeyError):
        box.apply("A", "c", "changed", "3", {"x": 1})
