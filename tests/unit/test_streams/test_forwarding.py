"""``streams.forwarding``: a forwarded command's origin in its headers, and the copies applied in memory."""

from __future__ import annotations

from fake_kafka import consumer_record

from streams.forwarding import NO_SOURCE, InMemoryCopies, Origin, origin_headers, record_origin


def test_the_origin_travels_in_the_headers_and_a_record_without_them_keeps_its_timestamp():
    headers = origin_headers(Origin(at_ms=1_000, depth=2, source=3))
    assert record_origin(consumer_record("pc", 0, 0, b"k", b"v", timestamp=9_999, headers=headers)) == Origin(
        1_000, 2, 3
    )
    assert record_origin(consumer_record("pc", 0, 0, b"k", b"v", timestamp=9_999)) == Origin(9_999, 1, NO_SOURCE)
    garbled = [("streamcdp-at", b"soon"), ("streamcdp-depth", b"4")]  # not ours: the default for that one
    assert record_origin(consumer_record("pc", 0, 0, b"k", b"v", timestamp=7, headers=garbled)) == Origin(7, 4)


def test_a_copy_is_skipped_once_per_command_applied_in_memory():
    copies = InMemoryCopies()
    copies.applied(b"u1", b"link")
    copies.applied(b"u1", b"link")  # the same command twice (a relink): two copies come back
    assert copies.take(b"u1", b"link") and copies.take(b"u1", b"link")
    assert not copies.take(b"u1", b"link")  # a third copy (a replay's): applied, idempotent
    assert not copies.take(b"u1", b"other") and not copies.take(None, b"link")
    assert len(copies) == 0


def test_past_the_bound_the_oldest_is_forgotten_and_its_copy_applied_again():
    copies = InMemoryCopies(max_entries=2)
    for n in range(3):
        copies.applied(b"k", b"%d" % n)
    assert len(copies) == 2
    assert not copies.take(b"k", b"0") and copies.take(b"k", b"1") and copies.take(b"k", b"2")
