"""The garbage collector's pauses, timed by generation (``streams.gc_pauses``)."""

from __future__ import annotations

import gc

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams import metrics
from streams.gc_pauses import BUCKETS, GcPauses


@pytest.fixture
def pauses():
    registry = CollectorRegistry()
    timer = GcPauses()
    registry.register(timer)
    timer.install()
    yield timer, registry
    gc.callbacks.remove(timer)


def sample(registry: CollectorRegistry, name: str, generation: int, **labels: str) -> float:
    return registry.get_sample_value(name, {"generation": str(generation), **labels}) or 0.0


def test_a_full_collection_is_counted_under_generation_2(pauses) -> None:
    _, registry = pauses
    before_young = sample(registry, "streamcdp_gc_pause_seconds_count", 0)
    gc.collect()  # generation 2: every object
    assert sample(registry, "streamcdp_gc_pause_seconds_count", 2) == 1
    assert sample(registry, "streamcdp_gc_pause_seconds_sum", 2) > 0
    assert sample(registry, "streamcdp_gc_pause_seconds_bucket", 2, le="+Inf") == 1
    assert sample(registry, "streamcdp_gc_pause_seconds_count", 0) == before_young


def test_the_buckets_are_cumulative_and_a_pause_counts_in_the_first_bound_it_fits() -> None:
    timer = GcPauses()
    timer.counts[1][BUCKETS.index(0.01)] = 2  # two pauses of (0.005, 0.01] s
    timer.counts[1][-1] = 1  # one longer than the largest bound
    registry = CollectorRegistry()
    registry.register(timer)
    assert sample(registry, "streamcdp_gc_pause_seconds_bucket", 1, le="0.005") == 0
    assert sample(registry, "streamcdp_gc_pause_seconds_bucket", 1, le="0.01") == 2
    assert sample(registry, "streamcdp_gc_pause_seconds_bucket", 1, le="1.0") == 2
    assert sample(registry, "streamcdp_gc_pause_seconds_bucket", 1, le="+Inf") == 3
    assert sample(registry, "streamcdp_gc_pause_seconds_count", 1) == 3


def test_a_collection_during_a_scrape_is_counted_and_the_scrape_ends(pauses) -> None:
    """The callback runs inside whatever allocation triggered the collection, a scrape's too: it takes no lock
    (prometheus_client's are not re-entrant: observing a ``Histogram`` there could wait for its own lock)."""
    timer, registry = pauses

    class CollectsGarbage:
        def collect(self):
            gc.collect()
            return []

    registry.register(CollectsGarbage())
    text = generate_latest(registry).decode()
    assert 'streamcdp_gc_pause_seconds_count{generation="2"}' in text
    assert sample(registry, "streamcdp_gc_pause_seconds_count", 2) >= 1


def test_installing_twice_keeps_one_entry(pauses) -> None:
    timer, _ = pauses
    timer.install()
    assert gc.callbacks.count(timer) == 1


def test_a_stop_without_its_start_times_nothing() -> None:
    timer = GcPauses()
    timer("stop", {"generation": 1, "collected": 0, "uncollectable": 0})  # installed during a collection
    assert sum(timer.counts[1]) == 0
    timer("start", {"generation": 1})
    timer("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert sum(timer.counts[1]) == 1


def test_the_worker_metrics_expose_the_pauses() -> None:
    assert metrics.registry.get_sample_value("streamcdp_gc_pause_seconds_count", {"generation": "0"}) is not None
