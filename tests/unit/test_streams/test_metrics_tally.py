"""The agents' ``Tally`` reaches Prometheus through ``metrics.PublishedTally``: all of it, only when published."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from agents import tally as names
from streams.metrics import COUNTER_BY_NAME, HISTOGRAM_BY_NAME, PublishedTally


def test_counts_and_observations_are_added_up_and_published_once():
    registry = CollectorRegistry()
    by_kind = Counter("t_by_kind_total", "test", ["kind"], registry=registry)
    plain = Counter("t_plain_total", "test", registry=registry)
    lag = Histogram("t_lag_seconds", "test", buckets=(1, 10), registry=registry)
    tally = PublishedTally({"by_kind": by_kind, "plain": plain}, {names.EVENT_LAG_SECONDS: lag})
    for _ in range(3):
        tally.add("by_kind", "event")
    tally.add("by_kind", "link", amount=2)
    tally.add("plain")
    tally.observe(names.EVENT_LAG_SECONDS, 0.5)
    tally.observe(names.EVENT_LAG_SECONDS, 5.0)
    assert registry.get_sample_value("t_by_kind_total", {"kind": "event"}) is None  # nothing before publish
    tally.publish()
    tally.publish()  # a second publish adds nothing
    assert registry.get_sample_value("t_by_kind_total", {"kind": "event"}) == 3
    assert registry.get_sample_value("t_by_kind_total", {"kind": "link"}) == 2
    assert registry.get_sample_value("t_plain_total") == 1
    assert registry.get_sample_value("t_lag_seconds_bucket", {"le": "1.0"}) == 1
    assert registry.get_sample_value("t_lag_seconds_count") == 2


def test_every_name_the_agents_count_has_its_prometheus_metric():
    assert set(COUNTER_BY_NAME) == set(names.COUNTERS)
    assert set(HISTOGRAM_BY_NAME) == set(names.OBSERVATIONS)
