"""Giving the C heap's free pages back to the system after flushes (glibc ``malloc_trim``).

A flush of a draining worker allocates and frees tens of MiB at once: the encoded changelog values, their
copies in the producer's batches and in RocksDB's write batch, the consumer's fetch responses. glibc keeps
freed memory in its heap for reuse and returns only the top of the heap, so a heap whose top holds one live
object keeps every free page below it: in `bench/state_bench.py`'s drain of a million profiles the main heap
held 1.58 GB of a 2.45 GB RSS, and ~210 MB with a trim every 5 s (bench/README.md, "Round 4"). ``malloc_trim(0)``
returns the free pages anywhere in the heap; it walks the heap (20-70 ms on a 600 MiB heap), so it runs once the
RSS grew by ``malloc_trim_growth_bytes`` since the last trim, at most every ``malloc_trim_interval_s``.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def glibc_malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS). Looked up among the
    symbols the process has loaded already (``CDLL(None)``): ``ctypes.util.find_library`` would run
    ``ldconfig`` in a subprocess for each runtime built."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def resident_bytes() -> int | None:
    """The process's resident memory (``/proc/self/statm``, ~10 µs), or None where there is no procfs."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


class HeapTrimmer:
    """Calls ``trim`` after a flush once the resident memory grew by ``growth_bytes`` since the last trim, at
    most once per ``interval_s`` (0: never). A trim walks the heap, so one per flush would cost several per
    cent of a draining worker's CPU; one per interval let the freed memory of several flushes pile up (the
    RSS of the 1M drain went up and down by ~250 MB between trims every 5 s, bench README "Round 5"). Keyed
    to growth, a trim runs when there is something to give back, and the RSS stays within about
    ``growth_bytes`` of what the process holds live. Without a reading of the RSS (no procfs), or with
    ``growth_bytes`` 0, it trims once per interval."""

    def __init__(
        self,
        interval_s: float,
        trim: Callable[[], object] | None,
        *,
        growth_bytes: int = 0,
        resident: Callable[[], int | None] = resident_bytes,
    ) -> None:
        self.interval_s = interval_s
        self.growth_bytes = growth_bytes
        self._trim = trim if interval_s > 0 else None
        self._resident = resident
        self._last: float | None = None
        self._floor: int | None = None  # the lowest RSS seen since the last trim (None: none read yet)
        if interval_s > 0 and trim is None:
            log.info("the C library has no malloc_trim: freed heap memory stays with the process")

    def after_flush(self, now: float) -> bool:
        """Trim if due at monotonic time ``now``; whether it did."""
        if self._trim is None or (self._last is not None and now - self._last < self.interval_s):
            return False
        if self.growth_bytes and self._last is not None:
            rss = self._resident()
            if rss is not None:
                floor = rss if self._floor is None else min(self._floor, rss)
                self._floor = floor
                if rss - floor < self.growth_bytes:
                    return False
        self._last = now
        self._trim()
        if self.growth_bytes:
            self._floor = self._resident()
        return True
