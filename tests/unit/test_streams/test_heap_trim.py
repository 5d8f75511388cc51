"""The heap trim after flushes: once the RSS grew enough, at most once per interval, never when disabled or
unavailable."""

from __future__ import annotations

from streams.heap_trim import HeapTrimmer, glibc_malloc_trim, resident_bytes


def test_trims_at_the_first_flush_then_once_per_interval():
    calls: list[int] = []
    trimmer = HeapTrimmer(5.0, lambda: calls.append(1))
    done = [trimmer.after_flush(now) for now in (100.0, 101.0, 104.9, 105.0, 106.0, 110.5)]
    assert done == [True, False, False, True, False, True]
    assert len(calls) == 3


def test_interval_zero_or_no_malloc_trim_never_trims():
    calls: list[int] = []
    assert not HeapTrimmer(0.0, lambda: calls.append(1)).after_flush(100.0)
    assert not HeapTrimmer(5.0, None).after_flush(100.0)
    assert calls == []


def test_glibc_trim_runs_here():
    """This machine's C library is glibc: the real call returns (1: memory was released, 0: none)."""
    trim = glibc_malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)


def test_with_a_growth_bound_trims_only_once_the_rss_grew_that_much_since_the_last_trim():
    calls: list[int] = []
    rss = [500]
    trimmer = HeapTrimmer(1.0, lambda: calls.append(rss[0]), growth_bytes=100, resident=lambda: rss[0])
    assert trimmer.after_flush(10.0)  # the first flush trims and takes the RSS after it as the floor
    rss[0] = 590
    assert not trimmer.after_flush(12.0)  # grew 90 < 100
    rss[0] = 450  # memory given back (an eviction): the floor follows it down
    assert not trimmer.after_flush(13.0)
    rss[0] = 560
    assert trimmer.after_flush(14.0)  # 110 above the lowest reading since the trim
    rss[0] = 900
    assert not trimmer.after_flush(14.5)  # grew, but within the interval
    assert trimmer.after_flush(15.0)
    assert calls == [500, 560, 900]


def test_without_a_reading_of_the_rss_trims_once_per_interval():
    calls: list[int] = []
    trimmer = HeapTrimmer(5.0, lambda: calls.append(1), growth_bytes=100, resident=lambda: None)
    assert [trimmer.after_flush(now) for now in (100.0, 101.0, 105.0)] == [True, False, True]


def test_the_rss_is_read_here():
    assert (resident_bytes() or 0) > 1024 * 1024
