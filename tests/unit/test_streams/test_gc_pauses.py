"""The garbage collector's pauses, timed by generation (``streams.gc_pauses``)."""

from __future__ import annotations

import gc

import pytest

from streams import gc_pauses, metrics


@pytest.fixture
def timer():
    installed = gc_pauses.install()
    yield installed
    gc.callbacks.remove(installed)


def pauses(generation: int) -> tuple[float, float]:
    labels = {"generation": str(generation)}
    count = metrics.registry.get_sample_value("streamcdp_gc_pause_seconds_count", labels) or 0.0
    total = metrics.registry.get_sample_value("streamcdp_gc_pause_seconds_sum", labels) or 0.0
    return count, total


def test_a_full_collection_is_observed_under_its_generation(timer) -> None:
    before_full, before_young = pauses(2), pauses(0)
    gc.collect()  # generation 2: every object
    count, total = pauses(2)
    assert count == before_full[0] + 1
    assert total > before_full[1]
    assert pauses(0) == before_young


def test_a_young_collection_is_observed_under_generation_0(timer) -> None:
    before = pauses(0)[0]
    gc.collect(0)
    assert pauses(0)[0] == before + 1


def test_installing_twice_keeps_one_timer(timer) -> None:
    assert gc_pauses.install() is timer
    assert sum(isinstance(callback, gc_pauses.GcPauseTimer) for callback in gc.callbacks) == 1


def test_a_stop_without_its_start_times_nothing() -> None:
    seen: list[tuple[int, float]] = []
    timer = gc_pauses.GcPauseTimer(lambda generation, seconds: seen.append((generation, seconds)))
    timer("stop", {"generation": 1, "collected": 0, "uncollectable": 0})  # installed during a collection
    assert seen == []
    timer("start", {"generation": 1})
    timer("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert [generation for generation, _ in seen] == [1]
    assert seen[0][1] >= 0
