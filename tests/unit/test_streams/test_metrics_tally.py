"""``metrics.Tally``: per-event counts reach Prometheus, all of them, only when published."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from streams.metrics import Tally


def test_counts_are_added_up_and_published_once():
    registry = CollectorRegistry()
    by_kind = Counter("t_by_kind_total", "test", ["kind"], registry=registry)
    plain = Counter("t_plain_total", "test", registry=registry)
    tally = Tally()
    for _ in range(3):
        tally.add(by_kind, "event")
    tally.add(by_kind, "link", amount=2)
    tally.add(plain)
    assert registry.get_sample_value("t_by_kind_total", {"kind": "event"}) is None  # nothing before publish
    tally.publish()
    tally.publish()  # a second publish adds nothing
    assert registry.get_sample_value("t_by_kind_total", {"kind": "event"}) == 3
    assert registry.get_sample_value("t_by_kind_total", {"kind": "link"}) == 2
    assert registry.get_sample_value("t_plain_total") == 1
