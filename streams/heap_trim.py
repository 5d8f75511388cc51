"""Giving the C heap's free pages back to the system after flushes (glibc ``malloc_trim``).

A flush of a draining worker allocates and frees tens of MiB at once: the encoded changelog values, their
copies in the producer's batches and in RocksDB's write batch, the consumer's fetch responses. glibc keeps
freed memory in its heap for reuse and returns only the top of the heap, so a heap whose top holds one live
object keeps every free page below it: in `bench/state_bench.py`'s drain of a million profiles the main heap
held 1.58 GB of a 2.45 GB RSS, and ~210 MB with a trim every 5 s (bench/README.md, "Round 4"). ``malloc_trim(0)``
returns the free pages anywhere in the heap; it walks the heap (20-70 ms on a 600 MiB heap), so it runs at most
every ``malloc_trim_interval_s``.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


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


class HeapTrimmer:
    """Calls ``trim`` after a flush when ``interval_s`` has passed since the last call (0: never)."""

    def __init__(self, interval_s: float, trim: Callable[[], object] | None) -> None:
        self.interval_s = interval_s
        self._trim = trim if interval_s > 0 else None
        self._last: float | None = None
        if interval_s > 0 and trim is None:
            log.info("the C library has no malloc_trim: freed heap memory stays with the process")

    def after_flush(self, now: float) -> bool:
        """Trim if due at monotonic time ``now``; whether it did."""
        if self._trim is None or (self._last is not None and now - self._last < self.interval_s):
            return False
        self._last = now
        self._trim()
        return True
