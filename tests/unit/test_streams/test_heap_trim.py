"""The heap trim after flushes: at most once per interval, never when disabled or unavailable."""

from __future__ import annotations

from streams.heap_trim import HeapTrimmer, glibc_malloc_trim


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
