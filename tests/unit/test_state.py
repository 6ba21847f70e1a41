"""The lock state's wire form: what Go lockheed writes and reads under ``data.lock``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockheed import MemoryLocker
from lockheed._core import Read
from lockheed._state import (
    NEVER,
    Lease,
    LockState,
    Record,
    StateFormatError,
    decode_state,
    encode_state,
    format_time,
    parse_time,
)

UTC = timezone.utc
T0 = datetime(2026, 11, 26, 7, 0, 30, tzinfo=UTC)

# The document of the Go module's README-style example, byte for byte as Go marshals it.
GO_DOC = (
    '{"name":"build","lockType":"mutex",'
    '"leases":{"9b2f":{"instanceID":"9b2f","expires":"2026-11-26T07:00:30.123456789Z"}},'
    '"tags":["tag1","tag2"]}'
)


def lease_doc(expires: Any, instance: Any = "a") -> str:
    return json.dumps(
        {
            "name": "x",
            "lockType": "mutex",
            "leases": {"a": {"instanceID": instance, "expires": expires}},
        }
    )


# ---------------------------------------------------------------- round trips


def test_go_document_decodes() -> None:
    state = decode_state(GO_DOC)
    assert state.name == "build"
    assert state.lock_type == "mutex"
    assert state.tags == ("tag1", "tag2")
    assert dict(state.leases) == {
        "9b2f": Lease("9b2f", datetime(2026, 11, 26, 7, 0, 30, 123456, tzinfo=UTC))
    }
    assert dict(state.extra) == {}


def test_encode_is_go_field_order_and_compact() -> None:
    state = LockState(
        "build",
        leases=MappingProxyType({"9b2f": Lease("9b2f", T0 + timedelta(microseconds=123456))}),
        tags=("tag1", "tag2"),
    )
    assert encode_state(state) == GO_DOC.replace(".123456789Z", ".123456Z")


def test_go_document_round_trips_up_to_nanoseconds() -> None:
    """Nanoseconds are truncated to microseconds; everything else is written back as read."""
    assert encode_state(decode_state(GO_DOC)) == GO_DOC.replace("123456789Z", "123456Z")


def test_freshly_created_go_document() -> None:
    """Go creates the ConfigMap with ``lockType: ""`` and ``leases: null``."""
    state = decode_state('{"name":"build","lockType":"","leases":null}')
    assert state == LockState("build", "mutex")
    assert state.leases == {}
    assert state.tags == ()


def test_missing_optional_fields_default() -> None:
    assert decode_state("{}") == LockState("", "mutex")
    assert decode_state('{"name":"x","tags":null}').tags == ()


def test_tags_omitted_when_empty() -> None:
    doc = json.loads(encode_state(LockState("x")))
    assert doc == {"name": "x", "lockType": "mutex", "leases": {}}
    assert "tags" not in doc


def test_unknown_fields_are_kept_on_reencode() -> None:
    text = (
        '{"future":{"a":[1,2.5,null,true]},"name":"x","lockType":"mutex","leases":null,'
        '"tags":["t"],"zz":"last"}'
    )
    state = decode_state(text)
    assert dict(state.extra) == {"future": {"a": [1, 2.5, None, True]}, "zz": "last"}
    again = json.loads(encode_state(state))
    assert again["future"] == {"a": [1, 2.5, None, True]}
    assert again["zz"] == "last"
    assert list(again)[:4] == ["name", "lockType", "leases", "tags"]
    assert decode_state(encode_state(state)) == state


def test_extra_never_overrides_known_fields() -> None:
    state = LockState("x", extra=MappingProxyType({"name": "other", "leases": None}))
    doc = json.loads(encode_state(state))
    assert doc["name"] == "x"
    assert doc["leases"] == {}


def test_unknown_lock_type_survives() -> None:
    state = decode_state('{"name":"x","lockType":"rwmutex","leases":{}}')
    assert state.lock_type == "rwmutex"
    assert json.loads(encode_state(state))["lockType"] == "rwmutex"


def test_lease_without_instance_id_takes_its_key() -> None:
    state = decode_state('{"name":"x","leases":{"a":{"expires":"2026-11-26T07:00:30Z"}}}')
    assert state.leases["a"] == Lease("a", T0)


def test_never_expiring_lease() -> None:
    state = decode_state(lease_doc("9999-12-31T23:59:59Z"))
    lease = state.leases["a"]
    assert lease.expires == NEVER
    assert lease.live(datetime(9999, 12, 31, 23, 59, 58, tzinfo=UTC))
    assert '"expires":"9999-12-31T23:59:59Z"' in encode_state(state)


def test_live_leases_and_with_leases() -> None:
    a, b = Lease("a", T0), Lease("b", T0 + timedelta(seconds=1))
    state = LockState("x").with_leases([a, b])
    assert list(state.leases) == ["a", "b"]
    assert state.live_leases(T0) == [b]  # expiry is exclusive: at T0, a is over
    assert state.live_leases(T0 - timedelta(microseconds=1)) == [a, b]
    assert state.live_leases(T0 + timedelta(seconds=1)) == []


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T07:00:30Z", T0),
        ("2026-11-26T07:00:30.1Z", T0 + timedelta(microseconds=100000)),
        ("2026-11-26T07:00:30.12Z", T0 + timedelta(microseconds=120000)),
        ("2026-11-26T07:00:30.123Z", T0 + timedelta(microseconds=123000)),
        ("2026-11-26T07:00:30.1234Z", T0 + timedelta(microseconds=123400)),
        ("2026-11-26T07:00:30.12345Z", T0 + timedelta(microseconds=123450)),
        ("2026-11-26T07:00:30.123456Z", T0 + timedelta(microseconds=123456)),
        ("2026-11-26T07:00:30.1234567Z", T0 + timedelta(microseconds=123456)),
        ("2026-11-26T07:00:30.12345678Z", T0 + timedelta(microseconds=123456)),
        ("2026-11-26T07:00:30.123456789Z", T0 + timedelta(microseconds=123456)),
        ("2026-11-26T07:00:30.000000999Z", T0),
        ("2026-11-26T08:00:30+01:00", T0),
        ("2026-11-26T01:30:30-05:30", T0),
        ("2026-11-26T08:00:30.5+01:00", T0 + timedelta(microseconds=500000)),
        ("2026-11-26T07:00:30+00:00", T0),
        ("2026-11-26T07:00:30-00:00", T0),
        ("2026-11-27T06:59:30+23:59", T0),
        ("9999-12-31T23:59:59Z", NEVER),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_parse_time_accepts_go_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-26",
        "2026-11-26T07:00:30",  # no zone
        "2026-11-26 07:00:30Z",
        "2026-11-26T07:00Z",
        "2026-11-26T07:00:30.Z",
        "2026-11-26T07:00:30.1234567890Z",  # 10 fraction digits
        "2026-11-26T07:00:30,5Z",
        "2026-11-26T07:00:30+0100",
        "2026-11-26T07:00:30+01",
        "2026-11-26T07:00:30 Z",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T07:60:00Z",
        "2026-11-26T07:00:60Z",  # Go rejects leap seconds too
        "0000-01-01T00:00:00Z",
        "26-11-26T07:00:30Z",
        " 2026-11-26T07:00:30Z",
        "2026-11-26T07:00:30ZZ",
    ],
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(StateFormatError):
        parse_time(text)


def test_parse_time_rejects_non_strings() -> None:
    with pytest.raises(StateFormatError):
        parse_time(1764140430)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-26T07:00:30+24:00",  # Go writes offsets below 24 h only
        "2026-11-26T07:00:30+23:60",
        "2026-11-26T07:00:30+01:75",
        "9999-12-31T23:59:59-01:00",  # after datetime.max in UTC
        "0001-01-01T00:00:00+01:00",  # before datetime.min in UTC
    ],
)
def test_out_of_range_timestamps_are_format_errors(text: str) -> None:
    """Format errors, never a bare ValueError or OverflowError that would crash a reader."""
    with pytest.raises(StateFormatError):
        parse_time(text)


def test_memory_locker_reads_out_of_range_timestamp_as_malformed() -> None:
    locker = MemoryLocker()
    locker.put_raw("x", lease_doc("9999-12-31T23:59:59-01:00"))
    record = locker.execute(Read("x"))
    assert isinstance(record, Record)
    assert record.state is None
    assert record.error


@pytest.mark.parametrize(
    "text",
    ["2026-11-26T07:00:30Z\n", "\u0662\u0660\u0662\u0666-11-26T07:00:30Z"],
)
def test_parse_time_is_as_strict_as_go(text: str) -> None:
    """Go refuses both; the module promises to reject what Go would not accept."""
    with pytest.raises(StateFormatError):
        parse_time(text)


@pytest.mark.parametrize(
    ("stamp", "text"),
    [
        (T0, "2026-11-26T07:00:30Z"),
        (T0 + timedelta(microseconds=100000), "2026-11-26T07:00:30.1Z"),
        (T0 + timedelta(microseconds=120000), "2026-11-26T07:00:30.12Z"),
        (T0 + timedelta(microseconds=123450), "2026-11-26T07:00:30.12345Z"),
        (T0 + timedelta(microseconds=1), "2026-11-26T07:00:30.000001Z"),
        (T0 + timedelta(microseconds=123456), "2026-11-26T07:00:30.123456Z"),
        (
            datetime(2026, 11, 26, 8, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            "2026-11-26T07:00:30Z",
        ),
        (
            datetime(2026, 11, 26, 1, 30, 30, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
            "2026-11-26T07:00:30Z",
        ),
        (NEVER, "9999-12-31T23:59:59Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),  # Go's zero time
        (datetime(999, 3, 4, 5, 6, 7, tzinfo=UTC), "0999-03-04T05:06:07Z"),
    ],
)
def test_format_time_is_go_rfc3339nano_in_utc(stamp: datetime, text: str) -> None:
    assert format_time(stamp) == text


def test_format_time_refuses_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2026, 1, 1))


aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)


@given(aware_datetimes)
def test_format_then_parse_is_identity(stamp: datetime) -> None:
    assert parse_time(format_time(stamp)) == stamp


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(0, 10**9 - 1),
    st.integers(0, 9),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_parse_time_of_any_go_form(
    local: datetime, nanos: int, digits: int, offset_minutes: int
) -> None:
    """Any wall time, fraction of 0-9 digits and zone offset means the instant it names."""
    fraction = f"{nanos:09d}"[:digits]
    if offset_minutes == 0:
        zone = "Z"
    else:
        sign = "+" if offset_minutes > 0 else "-"
        zone = f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    text = local.isoformat(timespec="seconds") + (f".{fraction}" if digits else "") + zone
    micros = int(fraction.ljust(9, "0")[:6]) if digits else 0
    expected = local.replace(microsecond=micros) - timedelta(minutes=offset_minutes)
    assert parse_time(text) == expected.replace(tzinfo=UTC)


# ---------------------------------------------------------------- malformed documents


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (None, "no 'lock' data key"),
        ("", "not JSON"),
        ("not json", "not JSON"),
        ('{"name":"x",', "not JSON"),
        ("null", "not a JSON object"),
        ("[]", "not a JSON object"),
        ('"lock"', "not a JSON object"),
        ("42", "not a JSON object"),
        ('{"name":7}', "must be strings"),
        ('{"lockType":null}', "must be strings"),
        ('{"lockType":1}', "must be strings"),
        ('{"leases":[]}', "'leases' must be an object"),
        ('{"leases":"a"}', "'leases' must be an object"),
        ('{"leases":{"a":null}}', "not an object"),
        ('{"leases":{"a":"2026-11-26T07:00:30Z"}}', "not an object"),
        ('{"leases":{"a":{"instanceID":"a"}}}', "no expiry"),
        ('{"leases":{"a":{"instanceID":"a","expires":null}}}', "no expiry"),
        ('{"leases":{"a":{"instanceID":"a","expires":1764140430}}}', "no expiry"),
        ('{"leases":{"a":{"instanceID":"a","expires":"tomorrow"}}}', "RFC 3339"),
        ('{"leases":{"a":{"instanceID":"a","expires":"2026-11-26T07:00:30"}}}', "RFC 3339"),
        (
            '{"leases":{"a":{"instanceID":"a","expires":"2026-02-30T07:00:30Z"}}}',
            "invalid timestamp",
        ),
        ('{"leases":{"a":{"instanceID":"b","expires":"2026-11-26T07:00:30Z"}}}', "instanceID"),
        ('{"leases":{"a":{"instanceID":null,"expires":"2026-11-26T07:00:30Z"}}}', "instanceID"),
        ('{"tags":"a"}', "'tags' must be a list of strings"),
        ('{"tags":{"a":1}}', "'tags' must be a list of strings"),
        ('{"tags":["a",1]}', "'tags' must be a list of strings"),
        ('{"tags":[null]}', "'tags' must be a list of strings"),
    ],
)
def test_malformed_documents_raise(text: str | None, match: str) -> None:
    with pytest.raises(StateFormatError, match=match):
        decode_state(text)


def test_deeply_nested_document_is_a_format_error() -> None:
    """Go's decoder refuses nesting deeper than 10000 too; a reader must not crash."""
    depth = 100_000
    with pytest.raises(StateFormatError, match="not JSON"):
        decode_state('{"x":' + "[" * depth + "]" * depth + "}")


def test_state_format_error_is_a_value_error() -> None:
    assert issubclass(StateFormatError, ValueError)


def test_memory_locker_reads_malformed_documents_as_records_without_state() -> None:
    locker = MemoryLocker()
    locker.put_raw("x", '{"leases":[]}')
    record = locker.execute(Read("x"))
    assert isinstance(record, Record)
    assert record.state is None
    assert record.error is not None
    assert "leases" in record.error


# ---------------------------------------------------------------- properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
extra_fields = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in {"name", "lockType", "leases", "tags"}),
    json_values,
    max_size=3,
)


@st.composite
def lock_states(draw: st.DrawFn) -> LockState:
    leases = draw(st.dictionaries(st.text(max_size=12), aware_datetimes, max_size=3))
    return LockState(
        name=draw(st.text(max_size=12)),
        lock_type=draw(st.sampled_from(["mutex", "rwmutex"]) | st.text(min_size=1, max_size=8)),
        leases=MappingProxyType({key: Lease(key, expires) for key, expires in leases.items()}),
        tags=tuple(draw(st.lists(st.text(max_size=8), max_size=4))),
        extra=MappingProxyType(draw(extra_fields)),
    )


@given(lock_states())
def test_decode_encode_round_trip(state: LockState) -> None:
    text = encode_state(state)
    assert decode_state(text) == state
    assert encode_state(decode_state(text)) == text


@given(lock_states())
def test_encoded_form_is_what_go_expects(state: LockState) -> None:
    doc = json.loads(encode_state(state))
    assert list(doc)[:3] == ["name", "lockType", "leases"]
    assert ("tags" in doc) == bool(state.tags)
    for key, lease in doc["leases"].items():
        assert list(lease) == ["instanceID", "expires"]
        assert lease["instanceID"] == key
        assert lease["expires"].endswith("Z")
        if "." in lease["expires"]:  # a fraction of 1-6 digits without trailing zeros
            fraction = lease["expires"][20:-1]
            assert 1 <= len(fraction) <= 6
            assert not fraction.endswith("0")
