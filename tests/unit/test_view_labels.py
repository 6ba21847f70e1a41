"""View labels: who must see every change of a lock's object (pure), and the
labels every write of the ConfigMap and Lease codecs carries."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lockheed._clock import ServerClock
from lockheed._codec import LABEL, new_configmap, updated_configmap
from lockheed._core import (
    CLAIM_WINDOW,
    LOOK_AT_MOST,
    TOKEN_HOLDER_KEY,
    TOKEN_KEY,
    Intent,
    Replace,
    Watch,
    Write,
    acquire_flow,
    decide_acquire,
    decide_release,
)
from lockheed._leasecodec import updated_lease
from lockheed._queue import (
    IN_VIEW,
    VIEW_PREFIX,
    Waiter,
    in_view,
    queue_meta,
    view_label,
    view_labels,
    with_view_labels,
)
from lockheed._state import Lease, LockState, Record

UTC = timezone.utc
T0 = datetime(2026, 11, 30, 7, tzinfo=UTC)
NAME = "jobs"
LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def configmap(
    holder: str | None,
    line: tuple[str, ...],
    labels: dict[str, str],
    owner: str | None = "",
) -> Record:
    """A stored ConfigMap (as read) with ``holder``'s lease and ``line``; the
    fencing token held by ``owner`` (by default the holder, as a lockheed holder
    does; None: no token, as after a Go lockheed holder took a new lock)."""
    leases = [] if holder is None else [Lease(holder, at(20))]
    state = LockState(NAME, "mutex").with_leases(leases)
    meta = {k: v for k, v in queue_meta(Waiter(w, None) for w in line).items() if v}
    owner = holder if owner == "" else owner
    if owner is not None:
        meta.update({TOKEN_KEY: "30", TOKEN_HOLDER_KEY: owner})
    raw = new_configmap("lockheed-jobs", "ns", state, meta)
    raw["metadata"]["labels"] = dict(labels)
    raw["metadata"]["resourceVersion"] = "40"
    return Record(NAME, "40", state, meta, raw=raw)


def written_labels(record: Record, decision: Any) -> dict[str, str]:
    assert isinstance(decision, Write), decision
    effect = Replace(NAME, record.version, decision.state, decision.meta, record)
    labels: dict[str, str] = updated_configmap("lockheed-jobs", effect)["metadata"]["labels"]
    return labels


def views(*ids: str) -> set[str]:
    return {view_label(i) for i in ids}


def ours(labels: dict[str, str]) -> set[str]:
    return {k for k in labels if k.startswith(VIEW_PREFIX)}


# ------------------------------------------------------------ the label key


def test_an_instance_id_that_fits_is_the_label_name() -> None:
    who = str(uuid.uuid4())
    assert view_label(who) == f"lockheed/w.{who}"


@given(st.text(min_size=1, max_size=200))
def test_every_instance_id_gives_a_valid_label_key(who: str) -> None:
    key = view_label(who)
    prefix, name = key.split("/", 1)
    assert prefix == "lockheed" and key.startswith(VIEW_PREFIX)
    assert len(name) <= 63 and LABEL_NAME.fullmatch(name), key


def test_ids_too_long_or_not_label_names_are_hashed_apart() -> None:
    long_a, long_b = "a" * 62, "a" * 61 + "b"
    assert view_label(long_a) != view_label(long_b)
    assert view_label("a b") != view_label("a_b")
    assert view_label("a b").startswith("lockheed/w.h.")


# ------------------------------------------------------------ who is labelled


def test_the_holders_are_labelled_and_the_first_two_in_line_unless_ours_holds() -> None:
    line = tuple(Waiter(w, None) for w in ("a", "b", "c", "d"))
    assert IN_VIEW == 2
    # A lockheed holder alone (it holds the fencing token): its release hands
    # the lock to the first, and that write labels it (the holder then).
    assert in_view(["h"], "h") == 0
    assert view_labels(["h"], line, "h") == views("h")
    # Free, or held by another writer (Go lockheed, whose release labels nobody):
    # the second sees every change too, to take over from a first that died.
    assert view_labels([], line, "h") == views("a", "b")
    assert view_labels(["g"], line, "h") == views("g", "a", "b")
    assert view_labels(["g"], line, None) == views("g", "a", "b")
    assert view_labels(["h", "g"], line, "h") == views("h", "g", "a", "b")
    assert view_labels([], line[3:]) == views("d")
    assert view_labels(["h1", "h2"], ()) == views("h1", "h2")  # a shared lock's holders


def test_labels_of_others_are_kept_and_stale_view_labels_removed() -> None:
    labels = {LABEL: "", "app": "x", view_label("gone"): "1", view_label("a"): "1"}
    assert with_view_labels(labels, frozenset(views("a", "b"))) == {
        LABEL: "",
        "app": "x",
        view_label("a"): "1",
        view_label("b"): "1",
    }


# ------------------------------------------------------------ what writes carry


def test_a_hand_off_labels_the_new_holder_alone() -> None:
    stale = {LABEL: "", "app": "x", view_label("gone"): "1", view_label("h"): "1"}
    record = configmap("h", ("a", "b", "c", "d"), stale)
    release = decide_release(Intent(NAME, "h", timedelta(seconds=30)), record, at(0), 31, at(1))
    labels = written_labels(record, release)
    assert ours(labels) == views("a")  # the old holder is out of view, and so is the line
    assert labels[LABEL] == "" and labels["app"] == "x"


def test_a_join_far_back_does_not_label_the_newcomer() -> None:
    record = configmap("h", ("a", "b"), {LABEL: ""})
    join = decide_acquire(Intent(NAME, "e", timedelta(seconds=30)), record, at(0), at(1))
    assert ours(written_labels(record, join)) == views("h")
    first = configmap("h", (), {LABEL: ""})
    join = decide_acquire(Intent(NAME, "e", timedelta(seconds=30)), first, at(0), at(1))
    assert ours(written_labels(first, join)) == views("h")  # first, behind ours: not even so
    # Behind a Go lockheed holder (no fencing token of its own), second is in view.
    go = configmap("g", ("a",), {LABEL: ""}, owner=None)
    join = decide_acquire(Intent(NAME, "e", timedelta(seconds=30)), go, at(0), at(1))
    assert ours(written_labels(go, join)) == views("g", "a", "e")


def test_a_lease_write_carries_the_same_labels() -> None:
    record = configmap("h", ("a", "b", "c"), {LABEL: ""})
    release = decide_release(Intent(NAME, "h", timedelta(seconds=30)), record, at(0), 31, at(1))
    assert isinstance(release, Write)
    effect = Replace(NAME, "40", release.state, release.meta, record)
    body = updated_lease("lockheed-jobs", effect, at(1))
    assert ours(body["metadata"]["labels"]) == views("a")


# ------------------------------------------------------------ the waits


def waits_of(record: Record, who: str, fair: bool = True) -> Watch:
    clock = ServerClock(monotonic=lambda: 100.0, wall=lambda: T0.timestamp())
    clock.observe(int(T0.timestamp()), 100.0, 100.0)
    flow = acquire_flow(Intent(NAME, who, timedelta(seconds=30), fair=fair), clock, None, record)
    effect = next(flow)
    assert isinstance(effect, Watch), effect
    return effect


def test_a_fair_waiter_watches_by_its_view_and_reads_by_its_place() -> None:
    record = configmap("h", ("a", "b", "c", "d"), {LABEL: ""})
    # The first and second read every CLAIM_WINDOW: behind a lockheed holder they
    # are out of view (a waiter handed the lock may die, its claim running out
    # unwritten), and behind a Go holder their label may be a write late.
    first = waits_of(record, "a")
    assert first.view == "a" and first.look == 100.0 + CLAIM_WINDOW
    second = waits_of(record, "b")
    assert second.view == "b" and second.look == 100.0 + CLAIM_WINDOW
    third, fourth = waits_of(record, "c"), waits_of(record, "d")
    assert third.look == 100.0 + CLAIM_WINDOW
    assert fourth.look == 100.0 + 2 * CLAIM_WINDOW
    go = configmap("g", ("a", "b", "c", "d"), {LABEL: ""}, owner=None)
    assert waits_of(go, "a").look == 100.0 + CLAIM_WINDOW  # used only out of view
    assert waits_of(go, "b").look == 100.0 + CLAIM_WINDOW
    assert waits_of(go, "c").look == 100.0 + CLAIM_WINDOW
    # However far back: the line may move up unseen, and the waiters then ahead die.
    long = configmap("h", tuple("abcdefghij"), {LABEL: ""})
    assert waits_of(long, "j").look == 100.0 + LOOK_AT_MOST


def test_a_racing_waiter_watches_every_change() -> None:
    record = configmap("h", (), {LABEL: ""})
    assert waits_of(record, "r", fair=False).view is None
