"""When the loop flushes: large transactions under a backlog, outputs within ``output_linger_s`` once caught up."""

from __future__ import annotations

from streams.flush_policy import (
    FETCH_WAIT_MS,
    HELD_BACK_FETCH_WAIT_MS,
    fetch_pause_s,
    fetch_wait_ms,
    flush_due,
    flush_due_within_fetch,
)
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


def test_a_fetch_is_flushed_between_runs_once_its_changed_keys_reach_the_bound():
    bounded = Settings(flush_max_dirty_keys=5000)
    assert not flush_due_within_fetch(bounded, dirty_keys=4999)
    assert flush_due_within_fetch(bounded, dirty_keys=5000)


def test_a_fetch_does_not_wait_past_the_moment_waiting_outputs_are_due():
    assert fetch_wait_ms(SETTINGS, held_back=False, outputs=0, since_flush_s=0.0) == FETCH_WAIT_MS
    assert fetch_wait_ms(SETTINGS, held_back=True, outputs=0, since_flush_s=0.0) == HELD_BACK_FETCH_WAIT_MS
    assert fetch_wait_ms(SETTINGS, held_back=False, outputs=3, since_flush_s=0.02) == 30
    assert fetch_wait_ms(SETTINGS, held_back=False, outputs=3, since_flush_s=0.2) == 0


def pause(
    *, fetched: int = 10, held_back: bool = False, since_fetch: float = 0.0, outputs: int = 0, since: float = 0.0
):
    return fetch_pause_s(
        LIVE, fetched=fetched, held_back=held_back, since_fetch_s=since_fetch, outputs=outputs, since_flush_s=since
    )


LIVE = Settings(output_linger_s=0.05, live_fetch_interval_s=0.025, fetch_max_records=1000)


def test_after_a_small_fetch_records_gather_until_the_live_fetch_interval():
    assert pause(since_fetch=0.0) == 0.025
    assert round(pause(since_fetch=0.01), 6) == 0.015
    assert pause(since_fetch=0.03) == 0.0


def test_no_pause_under_a_backlog_when_idle_or_with_records_held_back():
    assert pause(fetched=1000) == 0.0  # a full fetch: a backlog
    assert pause(fetched=0) == 0.0  # an empty fetch waited for records already
    assert pause(held_back=True) == 0.0  # the lagging input is waited for with short fetches


def test_the_pause_never_runs_past_the_moment_waiting_outputs_are_due():
    assert round(pause(outputs=3, since=0.04), 6) == 0.01
    assert pause(outputs=3, since=0.06) == 0.0
    assert pause(outputs=0, since=0.06) == 0.025  # nothing waits: the interval alone
