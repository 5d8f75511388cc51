"""The cyclic garbage collector's pauses, timed: ``streamcdp_gc_pause_seconds{generation}``.

A collection runs inside whatever allocation triggered it, so the event loop stops for it: a young one is
short, but an older generation's walks every container object that survived into it, and a worker keeps
tens of thousands of decoded profiles cached. Such a pause adds to every output waiting for the next flush,
so it shows in the tail of the outputs' latency. prometheus_client's default collectors count collections
(``python_gc_collections_total``) but do not time them; ``gc.callbacks`` brackets each one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from streams import metrics


class GcPauseTimer:
    """A ``gc.callbacks`` entry: observes each collection's duration by its generation."""

    def __init__(self, observe: Callable[[int, float], None] | None = None) -> None:
        self._observe = observe or _observe_metric
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:  # "stop"; installed mid-collection: no start seen, nothing timed
            self._observe(info["generation"], time.perf_counter() - self._started)
            self._started = None


def _observe_metric(generation: int, seconds: float) -> None:
    metrics.gc_pause_seconds.labels(str(generation)).observe(seconds)


def install() -> GcPauseTimer:
    """Time every collection of this process from now on (once: a second call returns the first timer)."""
    for callback in gc.callbacks:
        if isinstance(callback, GcPauseTimer):
            return callback
    timer = GcPauseTimer()
    gc.callbacks.append(timer)
    return timer
