"""The cyclic garbage collector's pauses, timed: ``streamcdp_gc_pause_seconds{generation}``.

A collection runs inside whatever allocation triggered it, so the event loop stops for it: a young one is
short, but an older generation's walks every container object that survived into it, and a worker keeps
tens of thousands of decoded profiles cached. Such a pause adds to every output waiting for the next flush,
so it shows in the tail of the outputs' latency. prometheus_client's default collectors count collections
(``python_gc_collections_total``) but do not time them; ``gc.callbacks`` brackets each one.

The callback counts into plain integers and a collector exposes them as a histogram at scrape time. It must
not call prometheus_client: a collection can start inside a scrape that holds a metric's lock (its locks are
not re-entrant), and observing there would wait for that lock for good, freezing the worker.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = 3


class GcPauses(Collector):
    """A ``gc.callbacks`` entry timing each collection by its generation, and the collector of the figures."""

    def __init__(self) -> None:
        # Per generation: the count in each bucket (the last one past the largest bound), and the seconds in all.
        self.counts = [[0] * (len(BUCKETS) + 1) for _ in range(GENERATIONS)]
        self.seconds = [0.0] * GENERATIONS
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:  # "stop"; installed mid-collection: no start seen, nothing timed
            seconds = time.perf_counter() - self._started
            self._started = None
            generation = info["generation"]
            self.counts[generation][bisect_left(BUCKETS, seconds)] += 1
            self.seconds[generation] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "streamcdp_gc_pause_seconds",
            "One collection of the cyclic garbage collector, by generation (0 youngest, 2 all objects): the event "
            "loop stops meanwhile, so long ones show in the outputs' latency (``streams.gc_pauses``).",
            labels=["generation"],
        )
        for generation in range(GENERATIONS):
            counts, cumulative, buckets = self.counts[generation], 0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric([str(generation)], buckets, self.seconds[generation])
        yield family

    def install(self) -> GcPauses:
        """Time every collection of this process from now on (once)."""
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self
