"""When the loop flushes: large transactions under a backlog, outputs within ``output_linger_s`` once caught up."""

from __future__ import annotations

from streams.flush_policy import FETCH_WAIT_MS, HELD_BACK_FETCH_WAIT_MS, fetch_wait_ms, flush_due
from streams.settings import Settings

SETTINGS = Settings(commit_interval_s=0.5, output_linger_s=0.05, flush_max_records=1000)


def due(*, since: float, inputs: int = 10, empty: bool = False, outputs: int = 1, caught_up: bool = True) -> bool:
    return flush_due(SETTINGS, since_flush_s=since, inputs=inputs, empty=empty, outputs=outputs, caught_up=caught_up)


def test_a_caught_up_worker_flushes_its_outputs_after_the_linger_not_the_interval():
    assert not due(since=0.049)
    assert due(since=0.05)


def test_under_a_backlog_outputs_wait_for_the_interval():
    assert not due(since=0.3, caught_up=False)
    assert due(since=0.5, caught_up=False)


def test_without_outputs_only_the_interval_or_the_record_count_flush():
    assert not due(since=0.3, outputs=0)
    assert due(since=0.5, outputs=0)
    assert due(since=0.0, outputs=0, inputs=1000, caught_up=False)


def test_nothing_to_commit_is_never_flushed_by_time():
    assert not due(since=10.0, inputs=0, outputs=0, empty=True)


def test_a_fetch_does_not_wait_past_the_moment_waiting_outputs_are_due():
    assert fetch_wait_ms(SETTINGS, held_back=False, outputs=0, since_flush_s=0.0) == FETCH_WAIT_MS
    assert fetch_wait_ms(SETTINGS, held_back=True, outputs=0, since_flush_s=0.0) == HELD_BACK_FETCH_WAIT_MS
    assert fetch_wait_ms(SETTINGS, held_back=False, outputs=3, since_flush_s=0.02) == 30
    assert fetch_wait_ms(SETTINGS, held_back=False, outputs=3, since_flush_s=0.2) == 0
