"""The Segment HTTP Tracking API as pure functions: paths, write keys, bodies, limits and clock-skew correction.

``streams.collector`` is the service around these: it reads the request, calls ``read_calls`` to turn the
body into the messages to store (each one prepared by ``prepare_message``), validates and produces them.
Nothing here does I/O or reads the clock: ``received_at`` comes in as an argument.

Segment's rules followed here (https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/):

- ``POST /v1/<type>`` for one call, ``POST /v1/batch`` (``/v1/import`` is its old name) for ``{"batch": [...]}``;
  analytics.js's short paths ``/v1/t``, ``/v1/i``, ``/v1/p``, ``/v1/s``, ``/v1/a``, ``/v1/g``, ``/v1/b`` too.
- The write key is the HTTP Basic user name (empty password), or ``writeKey`` in the body (analytics.js sends
  ``text/plain`` bodies without an Authorization header to avoid a CORS preflight).
- At most 32 KB per call (and per event inside a batch) and 500 KB per batch; beyond, 400.
- ``timestamp`` is corrected for the device's clock: ``timestamp = receivedAt - (sentAt - originalTimestamp)``;
  the client's value is kept as ``originalTimestamp``. Without ``sentAt`` the timestamp stays as sent;
  without a timestamp it is ``receivedAt`` (corrected the same way when ``sentAt`` is there, i.e. unchanged).
- ``messageId`` is filled when absent. Here it is derived from the message's bytes (``api-`` + a hash) rather
  than random, so an SDK that retries a message without an id sends the same id again and the profile
  stage's messageId dedup drops the repeat.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from schemas.errors import InvalidEvent, StreamcdpError
from schemas.validation import parse_timestamp

CALL_PATHS: dict[str, str] = {
    **{f"/v1/{call}": call for call in ("track", "identify", "page", "screen", "alias", "group")},
    **{f"/v1/{call[0]}": call for call in ("track", "identify", "page", "screen", "alias", "group")},
}
BATCH_PATHS = ("/v1/batch", "/v1/b", "/v1/import")

# Envelope fields a batch may carry once for all its messages (Segment merges them into each message).
BATCH_DEFAULTS = ("context", "integrations")


class RequestRefused(StreamcdpError):
    """A request the collector answers with an error; ``code`` and ``message`` form Segment's error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON body of an error answer; the Segment SDKs read ``code`` and ``message``."""
    return {"success": False, "code": code, "message": message}


@dataclass(frozen=True)
class WriteKeys:
    """The accepted write keys, each with its source name (or None)."""

    sources: dict[str, str | None]

    def source_of(self, key: str) -> str | None:
        return self.sources.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self.sources


def parse_write_keys(text: str) -> WriteKeys:
    """``key[:source][,key[:source]]`` → ``WriteKeys``; blanks are skipped. Raises ``StreamcdpError`` for an
    empty list (a collector that accepts no key, or any key, is a mistake)."""
    sources: dict[str, str | None] = {}
    for item in text.split(","):
        key, _, source = item.strip().partition(":")
        if key.strip():
            sources[key.strip()] = source.strip() or None
    if not sources:
        message = "no write key configured: set STREAMCDP_WRITE_KEYS=key[:source][,key[:source]]"
        raise StreamcdpError(message)
    return WriteKeys(sources)


def basic_auth_user(header: str | None) -> str | None:
    """The user name of an ``Authorization: Basic`` header (Segment's write key), None without one."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0]


def authenticate(keys: WriteKeys, header: str | None, body_write_key: object = None) -> str:
    """The write key of a request (Basic user name, else the body's ``writeKey``); 401 when unknown."""
    key = basic_auth_user(header)
    if key is None and isinstance(body_write_key, str):
        key = body_write_key
    if key is None or key not in keys:
        message = "no write key given" if key is None else "the write key is not valid"
        raise RequestRefused(401, "unauthorized", message)
    return key


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent (``identity``) or gunzipped (``gzip``), refused once it exceeds ``limit`` bytes
    (decompressed piecewise, so a small gzip bomb never grows past the limit in memory)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        if len(body) > limit:
            raise _too_large(len(body), limit)
        return body
    if encoding not in ("gzip", "x-gzip"):
        message = f"unsupported Content-Encoding {encoding[:30]!r} (use gzip or none)"
        raise RequestRefused(400, "unsupported_encoding", message)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise _too_large(len(out), limit)
        out += inflater.flush()
    except zlib.error as exc:
        message = f"the gzip body cannot be decompressed: {exc}"
        raise RequestRefused(400, "bad_encoding", message) from None
    if not inflater.eof:
        raise RequestRefused(400, "bad_encoding", "the gzip body is truncated")
    if len(out) > limit:
        raise _too_large(len(out), limit)
    return out


def _too_large(size: int, limit: int) -> RequestRefused:
    message = f"the body is larger than {limit} bytes" + (f" ({size} bytes)" if size <= limit * 2 else "")
    return RequestRefused(400, "payload_too_large", message)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body; 400 for anything else."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestRefused(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestRefused(400, "invalid_json", "the body is not a JSON object")
    return body


def iso_utc_datetime(epoch_s: float) -> str:
    """``iso_utc`` by ``datetime`` (its definition; several µs a call, ``iso_utc`` is the fast form of it)."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ``iso_utc`` runs once per event (the corrected timestamp): its text is put together from these pieces.
_LAST_FAST_EPOCH_S = 253402300799.0 - 1.0  # 9999-12-31T23:59:58Z; beyond (or before 1970), datetime decides
_CLOCK_MINUTES = tuple(f"T{minute // 60:02d}:{minute % 60:02d}:" for minute in range(24 * 60))
_CLOCK_SECONDS = tuple(f"{second:02d}" for second in range(60))
_MILLISECONDS = tuple(f".{millisecond:03d}Z" for millisecond in range(1000))
_DAYS: dict[int, str] = {}  # days since 1970 → "YYYY-MM-DD" (a bounded memo: events of a batch share days)
_MAX_DAYS = 4096


def _day_text(days: int) -> str:
    if len(_DAYS) >= _MAX_DAYS:
        _DAYS.clear()
    text = _DAYS[days] = time.strftime("%Y-%m-%d", time.gmtime(days * 86400))
    return text


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds → ISO-8601 in UTC with milliseconds, as Segment writes timestamps.

    The same text as ``iso_utc_datetime`` (microseconds rounded half to even as ``datetime.fromtimestamp``
    does, then truncated to milliseconds as ``isoformat`` does), from tables instead of ``datetime`` +
    ``isoformat``, which cost a collector a tenth of its time."""
    return stored_timestamp(epoch_s)[0]


def stored_timestamp(epoch_s: float) -> tuple[str, float]:
    """``iso_utc(epoch_s)``, and the epoch that text stands for (``parse_timestamp`` of it, i.e. ``epoch_s``
    cut to the millisecond), so that the contract check does not parse the text the collector just wrote."""
    if not 0.0 <= epoch_s < _LAST_FAST_EPOCH_S:  # NaN and infinities too: datetime raises for them
        text = iso_utc_datetime(epoch_s)
        return text, parse_timestamp(text)
    fraction, whole = math.modf(epoch_s)
    microseconds, seconds = round(fraction * 1e6), int(whole)
    if microseconds >= 1_000_000:
        microseconds -= 1_000_000
        seconds += 1
    days, second_of_day = divmod(seconds, 86400)
    minute, second = divmod(second_of_day, 60)
    day = _DAYS.get(days) or _day_text(days)
    millisecond = microseconds // 1000
    text = f"{day}{_CLOCK_MINUTES[minute]}{_CLOCK_SECONDS[second]}{_MILLISECONDS[millisecond]}"
    # ``datetime.timestamp()`` divides whole microseconds by 10**6: this division rounds the same rational
    return text, (seconds * 1000 + millisecond) / 1000


def read_sent_at(sent_at: object) -> float | None:
    """A ``sentAt`` in epoch seconds; None when absent or unreadable (then no correction is made)."""
    if sent_at is None:
        return None
    try:
        return parse_timestamp(sent_at)
    except InvalidEvent:
        return None


# The epochs ``iso_utc`` can write: 0001-01-01T00:00:00Z up to the end of 9999 (tested at both edges).
_WRITABLE_EPOCHS_S = (-62135596800.0, 253402300800.0)


def corrected_timestamp(timestamp: object, sent_at: float | None, received_at: float) -> float | None:
    """Segment's clock-skew correction: ``receivedAt - (sentAt - timestamp)`` in epoch seconds.

    None when ``timestamp`` cannot be read, or when it (or its correction) is beyond the years an ISO-8601
    text can hold: the timestamp then stays as sent, for the contract check to judge; ``received_at`` when
    there is no timestamp; the timestamp unchanged without a (readable) ``sentAt``.
    """
    if timestamp is None:
        return received_at
    try:
        at = parse_timestamp(timestamp)
    except InvalidEvent:
        return None
    corrected = at if sent_at is None else received_at - (sent_at - at)
    return corrected if _WRITABLE_EPOCHS_S[0] <= corrected < _WRITABLE_EPOCHS_S[1] else None


def message_id_for(message: dict[str, Any]) -> str:
    """A stable id for a message sent without one: the same message sent again gets the same id."""
    digest = hashlib.blake2b(orjson.dumps(message, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()
    return f"api-{digest}"


# A timestamp already in the form ``iso_utc`` writes (UTC, milliseconds, ``Z``) of a year 1970-2199: when no
# skew correction applies it is stored as sent, since ``iso_utc`` of its parse is the same text (tested), and
# its epoch comes from ``datetime.fromisoformat`` alone (which reads the ``Z``), without ``parse_timestamp``'s
# general handling; the contract check then takes that epoch instead of parsing the text again.
# (Beyond 2199 a float's precision no longer keeps every millisecond through the round trip.)
_STORED_FORM = re.compile(
    r"(?:19[7-9][0-9]|2[01][0-9]{2})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z", re.ASCII
).fullmatch


def stored_form_epoch(timestamp: object) -> float | None:
    """``parse_timestamp(timestamp)`` for a text that ``iso_utc`` gives back unchanged (see ``_STORED_FORM``);
    None for any other value, and for a text of that form that is no time (``2026-02-30``, ``24:00``)."""
    if type(timestamp) is not str or _STORED_FORM(timestamp) is None:
        return None
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a request gives each of its messages, worked out once per request (``read_envelope``)."""

    call_type: str | None  # the type the path sets (single calls); None for a batch
    received_at: float
    received_iso: str  # ``iso_utc(received_at)``
    received_s: float  # the epoch ``received_iso`` stands for
    sent_at: object  # the body's ``sentAt`` as sent, None when absent
    sent_at_s: float | None  # ``read_sent_at(sent_at)``
    source: str | None  # the write key's source, added to ``context``
    defaults: tuple[tuple[str, dict[str, Any]], ...] = ()  # a batch's shared fields (``BATCH_DEFAULTS``)


def read_envelope(body: dict[str, Any], *, call_type: str | None, received_at: float, source: str | None) -> Envelope:
    """The request-wide part of preparing ``body``'s messages (``call_type`` None: a batch body)."""
    sent_at = body.get("sentAt")
    defaults: tuple[tuple[str, dict[str, Any]], ...] = ()
    if call_type is None:
        defaults = tuple((field, body[field]) for field in BATCH_DEFAULTS if isinstance(body.get(field), dict))
    received_iso, received_s = stored_timestamp(received_at)
    return Envelope(call_type, received_at, received_iso, received_s, sent_at, read_sent_at(sent_at), source, defaults)


_ABSENT = object()


def prepare_message(message: dict[str, Any], envelope: Envelope) -> tuple[dict[str, Any], float | None]:
    """One message as it is stored: type from the path (single calls), batch defaults merged, ``messageId``
    filled, ``receivedAt``/``sentAt``/``originalTimestamp`` recorded, ``timestamp`` corrected, ``context.source``
    set to the write key's source. A new dict (the input is not changed), and the epoch its ``timestamp``
    stands for (None when the timestamp cannot be read: the contract check names the problem)."""
    prepared = dict(message)
    if "writeKey" in prepared:
        del prepared["writeKey"]  # a credential, never stored
    if envelope.call_type is not None:
        prepared["type"] = envelope.call_type
    for field, shared in envelope.defaults:
        own = prepared.get(field, _ABSENT)
        if own is _ABSENT:
            prepared[field] = dict(shared)
        elif isinstance(own, dict):
            prepared[field] = {**shared, **own}
    message_id = prepared.get("messageId")
    if message_id is None or message_id == "":
        prepared["messageId"] = message_id_for(message)
    sent_at = prepared.get("sentAt")
    if sent_at is None:  # a message's own sentAt beats its batch's
        sent_at, sent_at_s = envelope.sent_at, envelope.sent_at_s
    else:
        sent_at_s = read_sent_at(sent_at)
    timestamp_s = _correct_timestamp(prepared, sent_at_s, envelope)
    if sent_at is not None:
        prepared["sentAt"] = sent_at
    prepared["receivedAt"] = envelope.received_iso
    source = envelope.source
    if source is not None:
        context = prepared.get("context")
        prepared["context"] = {**(context if isinstance(context, dict) else {}), "source": source}
    return prepared, timestamp_s


def _correct_timestamp(prepared: dict[str, Any], sent_at_s: float | None, envelope: Envelope) -> float | None:
    """Record ``originalTimestamp`` and the corrected ``timestamp``; the epoch the stored timestamp stands for."""
    original = prepared.get("timestamp")
    if original is None:
        prepared["timestamp"] = envelope.received_iso
        return envelope.received_s
    if sent_at_s is None:
        as_sent = stored_form_epoch(original)
        if as_sent is not None:
            prepared["originalTimestamp"] = original  # the timestamp stays: it is what ``iso_utc`` would write
            return as_sent
    corrected = corrected_timestamp(original, sent_at_s, envelope.received_at)
    if corrected is None:
        return None
    prepared["originalTimestamp"] = original
    prepared["timestamp"], timestamp_s = stored_timestamp(corrected)
    return timestamp_s


class Prepared(NamedTuple):
    """A message as it is stored: the prepared dict, and its JSON bytes (encoded once: checked by the
    contract from the dict, produced to Kafka as the bytes)."""

    message: Any
    raw: bytes
    timestamp_s: float | None = None  # the epoch of the message's ``timestamp`` when known (``prepare_message``)


@dataclass(frozen=True)
class Oversized:
    """A message of a batch larger than the per-event limit: dead-lettered with its bytes, never stored."""

    raw: bytes
    limit: int


def read_calls(
    body: dict[str, Any],
    *,
    call_type: str | None,
    received_at: float,
    source: str | None,
    max_call_bytes: int,
) -> list[Prepared | Oversized]:
    """The messages of a request body, each prepared and serialised (``call_type`` None: a batch).

    A single call larger than ``max_call_bytes`` is refused (400); inside a batch an oversized event is
    returned as ``Oversized`` so that only it is dead-lettered. A batch whose ``batch`` is not an array is
    refused; a batch entry that is not an object is returned as its JSON, for the contract check to reject.
    """
    if call_type is not None:
        messages: list[Any] = [body]
    else:
        messages = body.get("batch")  # type: ignore[assignment]
        if not isinstance(messages, list):
            raise RequestRefused(400, "invalid_batch", "a batch body needs a `batch` array")
    envelope = read_envelope(body, call_type=call_type, received_at=received_at, source=source)
    dumps = orjson.dumps
    prepared: list[Prepared | Oversized] = []
    for message in messages:
        if not isinstance(message, dict):
            prepared.append(Prepared(message, dumps(message)))
            continue
        ready, timestamp_s = prepare_message(message, envelope)
        raw = dumps(ready)
        if len(raw) > max_call_bytes:
            if call_type is not None:
                raise _too_large(len(raw), max_call_bytes)
            prepared.append(Oversized(raw, max_call_bytes))
            continue
        prepared.append(Prepared(ready, raw, timestamp_s))
    return prepared
