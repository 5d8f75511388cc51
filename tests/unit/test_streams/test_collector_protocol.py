"""The pure part of the HTTP collector: write keys, auth, bodies and limits, skew correction, batch splitting."""

from __future__ import annotations

import base64
import gzip
import math
import random

import orjson
import pytest

from schemas.errors import StreamcdpError
from schemas.validation import parse_timestamp
from streams.collector_protocol import (
    BATCH_PATHS,
    CALL_PATHS,
    Envelope,
    Oversized,
    Prepared,
    RequestRefused,
    authenticate,
    basic_auth_user,
    corrected_timestamp,
    decompress,
    iso_utc,
    iso_utc_datetime,
    message_id_for,
    parse_body,
    parse_write_keys,
    prepare_message,
    read_calls,
    read_envelope,
    stored_form_epoch,
    stored_timestamp,
)

RECEIVED = 1_796_000_000.0  # the collector's clock
KEYS = parse_write_keys("wk-web:website, wk-pos ,")


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def refusal(call, *args, **kwargs) -> RequestRefused:
    with pytest.raises(RequestRefused) as caught:
        call(*args, **kwargs)
    return caught.value


# --- paths and write keys ------------------------------------------------------------------------


def test_every_call_type_has_its_long_and_short_path():
    for call in ("track", "identify", "page", "screen", "alias", "group"):
        assert CALL_PATHS[f"/v1/{call}"] == CALL_PATHS[f"/v1/{call[0]}"] == call
    assert set(BATCH_PATHS) == {"/v1/batch", "/v1/b", "/v1/import"}


def test_write_keys_with_and_without_source():
    assert KEYS.sources == {"wk-web": "website", "wk-pos": None}
    assert "wk-web" in KEYS and "nope" not in KEYS
    with pytest.raises(StreamcdpError, match="no write key"):
        parse_write_keys(" , ")


@pytest.mark.parametrize(
    ("header", "user"),
    [
        (basic("wk-web"), "wk-web"),
        (basic("wk-web", "ignored"), "wk-web"),
        ("basic " + base64.b64encode(b"wk-pos:").decode(), "wk-pos"),
        (None, None),
        ("", None),
        ("Bearer abc", None),
        ("Basic %%%not-base64", None),
        ("Basic " + base64.b64encode(b"\xff\xfe:").decode(), None),
    ],
)
def test_basic_auth_user(header, user):
    assert basic_auth_user(header) == user


def test_authenticate_by_header_or_body_key():
    assert authenticate(KEYS, basic("wk-web")) == "wk-web"
    assert authenticate(KEYS, None, "wk-pos") == "wk-pos"
    assert authenticate(KEYS, basic("wk-web"), "other") == "wk-web"  # the header wins
    missing = refusal(authenticate, KEYS, None, None)
    wrong = refusal(authenticate, KEYS, basic("stolen"))
    assert (missing.status, missing.code, wrong.status, wrong.code) == (401, "unauthorized", 401, "unauthorized")
    assert refusal(authenticate, KEYS, None, 42).status == 401


# --- bodies, encodings, limits -----------------------------------------------------------------------


def test_identity_and_gzip_bodies_within_the_limit():
    body = b'{"batch": []}'
    assert decompress(body, None, 100) == decompress(body, "identity", 100) == body
    assert decompress(gzip.compress(body), "gzip", 100) == body
    assert decompress(gzip.compress(body), " GZIP ", 100) == body


def test_limits_apply_to_the_decompressed_body():
    bomb = gzip.compress(b"{" + b" " * 1_000_000 + b"}")
    assert len(bomb) < 2_000
    assert refusal(decompress, bomb, "gzip", 500 * 1024).code == "payload_too_large"
    assert refusal(decompress, b"x" * 101, None, 100).status == 400


@pytest.mark.parametrize(
    ("body", "encoding", "code"),
    [
        (b"{}", "br", "unsupported_encoding"),
        (b"{}", "deflate", "unsupported_encoding"),
        (b"not gzip at all", "gzip", "bad_encoding"),
        (gzip.compress(b'{"a": 1}')[:-6], "gzip", "bad_encoding"),
    ],
)
def test_wrong_encodings_are_refused_with_a_reason(body, encoding, code):
    refused = refusal(decompress, body, encoding, 1000)
    assert (refused.status, refused.code) == (400, code)


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"x"', b"\xff"])
def test_bodies_must_be_json_objects(raw):
    assert refusal(parse_body, raw).code == "invalid_json"


# --- clock skew, messageId, preparation -------------------------------------------------------------


def envelope(body: dict, call_type: str | None, source: str | None = None) -> Envelope:
    return read_envelope(body, call_type=call_type, received_at=RECEIVED, source=source)


def test_skew_correction_as_segment_documents_it():
    # The device clock is 1 hour behind: it stamped the event 10 s before sending.
    corrected = corrected_timestamp("2026-12-01T09:00:00Z", parse_timestamp("2026-12-01T09:00:10Z"), RECEIVED)
    assert corrected == RECEIVED - 10
    assert corrected_timestamp("2026-12-01T09:00:00Z", None, RECEIVED) == parse_timestamp("2026-12-01T09:00:00Z")
    assert corrected_timestamp(None, None, RECEIVED) == RECEIVED
    assert corrected_timestamp("yesterday", None, RECEIVED) is None  # left for the contract check to reject


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [(1e20, None), (-1e13, None), ("0001-01-01T00:00:00Z", "2026-12-01T09:00:10Z"), ("2026-12-01T09:00:00Z", 1e15)],
)
def test_a_timestamp_no_text_can_hold_is_left_as_sent(timestamp, sent_at):
    """Years beyond 1..9999 (as sent, or after the correction): stored as sent for the contract check to
    judge, never an error of the collector's own."""
    sent_at_s = None if sent_at is None else parse_timestamp(sent_at)
    assert corrected_timestamp(timestamp, sent_at_s, RECEIVED) is None
    prepared, _ = prepare_message({"timestamp": timestamp}, envelope({"sentAt": sent_at}, "track"))
    assert prepared["timestamp"] == timestamp and "originalTimestamp" not in prepared


def test_prepare_message_records_what_segment_records():
    message = {"type": "track", "event": "Cart Viewed", "userId": "u1", "timestamp": "2026-12-01T09:00:00Z"}
    prepared, _ = prepare_message(message, envelope({"sentAt": "2026-12-01T09:00:10.000Z"}, "track", source="website"))
    assert prepared["timestamp"] == iso_utc(RECEIVED - 10)
    assert prepared["originalTimestamp"] == "2026-12-01T09:00:00Z"
    assert prepared["sentAt"] == "2026-12-01T09:00:10.000Z"
    assert prepared["receivedAt"] == iso_utc(RECEIVED)
    assert prepared["context"] == {"source": "website"}
    assert prepared["messageId"] == message_id_for(message)
    assert "messageId" not in message  # the input is untouched


def test_the_path_sets_the_type_and_the_write_key_is_never_stored():
    message = {"type": "page", "userId": "u", "writeKey": "secret", "messageId": "m1"}
    prepared, _ = prepare_message(message, envelope(message, "identify"))
    assert prepared["type"] == "identify" and "writeKey" not in prepared and prepared["messageId"] == "m1"
    assert prepared["timestamp"] == prepared["receivedAt"] and "originalTimestamp" not in prepared


def test_a_message_sent_again_without_an_id_gets_the_same_id():
    message = {"type": "track", "event": "X", "userId": "u", "timestamp": 5, "properties": {"a": 1, "b": 2}}
    reordered = {"properties": {"b": 2, "a": 1}, "timestamp": 5, "userId": "u", "event": "X", "type": "track"}
    assert message_id_for(message) == message_id_for(reordered) != message_id_for({**message, "timestamp": 6})


def test_an_existing_context_is_kept_and_the_source_added():
    message = {"context": {"ip": "1.2.3.4", "source": "spoofed"}}
    prepared, _ = prepare_message(message, envelope(message, "track", source="pos"))
    assert prepared["context"] == {"ip": "1.2.3.4", "source": "pos"}


# --- batches ---------------------------------------------------------------------------------------


def read(body: dict, call_type: str | None = None, max_call_bytes: int = 32 * 1024):
    return read_calls(body, call_type=call_type, received_at=RECEIVED, source=None, max_call_bytes=max_call_bytes)


def test_a_batch_is_split_into_its_messages_with_the_shared_fields():
    body = {
        "batch": [
            {"type": "track", "event": "A", "userId": "u", "timestamp": "2026-12-01T09:00:00Z"},
            {"type": "identify", "userId": "u", "context": {"ip": "1"}, "sentAt": "2026-12-01T09:00:05Z"},
            "not an object",
        ],
        "sentAt": "2026-12-01T09:00:10Z",
        "context": {"library": {"name": "analytics-python"}},
    }
    results = read(body)
    assert all(orjson.loads(result.raw) == result.message for result in results)  # the bytes are the message
    first, second, third = (result.message for result in results)
    assert first["timestamp"] == iso_utc(RECEIVED - 10) and first["context"]["library"]["name"] == "analytics-python"
    assert second["sentAt"] == "2026-12-01T09:00:05Z"  # its own sentAt beats the batch's
    assert second["context"] == {"library": {"name": "analytics-python"}, "ip": "1"}
    assert third == "not an object"  # the contract check rejects it as not_an_object


def test_an_oversized_event_inside_a_batch_is_singled_out():
    small = {"type": "track", "event": "A", "userId": "u"}
    large = {**small, "properties": {"pad": "x" * 2000}}
    results = read({"batch": [small, large, small]}, max_call_bytes=1000)
    assert [type(result) for result in results] == [Prepared, Oversized, Prepared]
    assert orjson.loads(results[1].raw)["properties"]["pad"] == "x" * 2000


def test_an_oversized_single_call_is_refused():
    refused = refusal(read, {"userId": "u", "properties": {"pad": "x" * 2000}}, "track", 1000)
    assert (refused.status, refused.code) == (400, "payload_too_large")


@pytest.mark.parametrize("body", [{}, {"batch": {"a": 1}}, {"batch": "x"}])
def test_a_batch_body_needs_a_batch_array(body):
    assert refusal(read, body).code == "invalid_batch"


def test_iso_utc_writes_what_datetime_writes() -> None:
    """The table-built text equals ``datetime``'s, rounding included, across the years and at the edges."""
    draw = random.Random(13)
    epochs = [draw.uniform(0, 253402300799.0) for _ in range(20_000)] + [
        draw.uniform(1.7e9, 1.9e9) for _ in range(20_000)
    ]
    edges = [
        whole + fraction
        for whole in (0, 1, 59, 86399, 951782400, RECEIVED)
        for fraction in (0, 5e-7, 0.0005, 0.9995, 0.9999995)
    ]
    epochs += edges + [math.nextafter(edge, 0) for edge in edges] + [math.nextafter(edge, math.inf) for edge in edges]
    epochs += [253402300799.0 - 1.5, 253402300798.9999995, -1.5, -86400.0005]
    assert [iso_utc(epoch) for epoch in epochs] == [iso_utc_datetime(epoch) for epoch in epochs]
    assert iso_utc(RECEIVED) == "2026-11-30T00:53:20.000Z"
    # the edges of what ``corrected_timestamp`` lets through: the first and the last writable epoch
    assert iso_utc(-62135596800.0) == "0001-01-01T00:00:00.000Z"
    assert iso_utc(math.nextafter(253402300800.0, 0)) == "9999-12-31T23:59:59.999Z"


def test_a_timestamp_in_stored_form_survives_its_round_trip() -> None:
    """What ``prepare_message`` stores without parsing is exactly what parsing and formatting would store."""
    draw = random.Random(7)
    first, last = parse_timestamp("1970-01-01T00:00:00Z"), parse_timestamp("2199-12-31T23:59:59.999Z")
    epochs = [draw.uniform(first, last) for _ in range(20_000)] + [first, last, RECEIVED]
    texts = [iso_utc(epoch) for epoch in epochs] + ["2024-02-29T23:59:59.999Z", "2000-12-31T00:00:00.001Z"]
    assert [iso_utc(parse_timestamp(text)) for text in texts] == texts
    assert [stored_form_epoch(text) for text in texts] == [parse_timestamp(text) for text in texts]


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-30T00:53:20Z",  # no milliseconds
        "2026-11-30T00:53:20.123456Z",
        "2026-11-30T00:53:20.000+00:00",
        "2026-11-30t00:53:20.000z",
        " 2026-11-30T00:53:20.000Z",
        "2026-02-30T10:00:00.000Z",  # not a day
        "2026-13-01T10:00:00.000Z",
        "2026-11-30T24:00:00.000Z",
        "2026-11-30T23:59:60.000Z",
        "1969-12-31T23:59:59.999Z",  # before 1970 or after 2199: parsed and formatted, as any other text
        "2200-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "\uff12026-11-30T00:53:20.000Z",  # a non-ASCII digit
        1796000000,
        None,
    ],
)
def test_other_timestamps_are_not_in_stored_form(timestamp) -> None:
    assert stored_form_epoch(timestamp) is None


def test_the_epoch_of_a_written_timestamp_is_what_its_parse_gives() -> None:
    """``stored_timestamp``'s epoch spares the contract check its parse: it must be the parse, to the bit."""
    draw = random.Random(11)
    epochs = [draw.uniform(0, 253402300799.0) for _ in range(10_000)] + [
        draw.uniform(1.7e9, 1.9e9) for _ in range(10_000)
    ]
    epochs += [0.0, 0.0005, RECEIVED + 0.9995, 253402300798.9999995, -1.5, -62135596800.0, 253402300799.9]
    written = [stored_timestamp(epoch) for epoch in epochs]
    assert [text for text, _ in written] == [iso_utc_datetime(epoch) for epoch in epochs]
    assert [epoch for _, epoch in written] == [parse_timestamp(text) for text, _ in written]


def test_each_prepared_message_carries_the_epoch_of_its_timestamp() -> None:
    stamps = ["2026-12-01T09:00:00.250Z", "2026-12-01T09:00:00Z", 1796000000123, None, "yesterday", "2026-13-01T00:00Z"]
    batch = [{"type": "track", "timestamp": stamp} for stamp in stamps]
    for sent_at in (None, "2026-12-01T09:00:10Z"):
        results = read({"batch": batch, "sentAt": sent_at})
        epochs = [result.timestamp_s for result in results]
        assert epochs[-2:] == [None, None]  # unreadable: left for the contract check, which names the problem
        assert epochs[:-2] == [parse_timestamp(result.message["timestamp"]) for result in results[:-2]]


def test_a_timestamp_in_stored_form_is_stored_as_sent_unless_corrected() -> None:
    sent = "2026-12-01T09:00:00.250Z"
    as_sent, as_sent_s = prepare_message({"timestamp": sent}, envelope({}, "track"))
    assert as_sent["timestamp"] == as_sent["originalTimestamp"] == sent and as_sent_s == parse_timestamp(sent)
    corrected, corrected_s = prepare_message(
        {"timestamp": sent}, envelope({"sentAt": "2026-12-01T09:00:10.250Z"}, "track")
    )
    assert corrected["timestamp"] == iso_utc(RECEIVED - 10) and corrected["originalTimestamp"] == sent
    assert corrected_s == parse_timestamp(corrected["timestamp"])


@pytest.mark.parametrize("epoch", [math.nan, math.inf, -math.inf, 1e20])
def test_iso_utc_refuses_what_datetime_refuses(epoch: float) -> None:
    with pytest.raises((ValueError, OverflowError, OSError)):
        iso_utc_datetime(epoch)
    with pytest.raises((ValueError, OverflowError, OSError)):
        iso_utc(epoch)
