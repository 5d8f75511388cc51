"""Issue 4 through the real broker: every profile the worker builds equals the generator's ground truth.

A seeded omnichannel workload (anonymous browsing on several devices, identify and alias links, web and
POS orders, refunds, deletions) is produced into the inbound topics as it is; once the worker has
drained it, ``GET /profiles/{user_id}`` of every identified customer must show the truth's orders,
revenue, last order time, event count and linked devices; each linked anonymous id must resolve to the
same profile (``requested_id`` shows the redirect was followed); every deleted customer and each of
its devices answers 404; devices that never logged in keep profiles of their own with their events.
The second test does the same with a ``kill -9`` of the worker halfway through and a restart: nothing
lost, nothing applied twice (an event applied twice would show in the counts).

Size: the issue's full size by default, 2,000 customers over 30 days (≈ 194,000 events); both tests
take about two minutes together on the 2-core CI machine. ``GROUND_TRUTH_CUSTOMERS`` / ``_DAYS`` change it.
"""

from __future__ import annotations

import os
import time

import pytest
from conftest import (
    Pipeline,
    expected_document,
    metric_sum,
    observed_document,
    produce_raw_lines,
    profile_mismatches,
    read_metrics,
    wait_for_ingested,
    wait_until_drained,
)
from trigger_files import NO_TRIGGERS

from offline.generator import Workload, WorkloadConfig, generate_workload

__all__ = ["expected_document", "observed_document"]  # test_scale_out imports them from here

pytestmark = pytest.mark.integration

CUSTOMERS = int(os.environ.get("GROUND_TRUTH_CUSTOMERS", "2000"))
DAYS = float(os.environ.get("GROUND_TRUTH_DAYS", "30"))
SETTINGS = dict(triggers_file=NO_TRIGGERS)  # no reminders: only the stream's own commands
DRAIN_TIMEOUT_S = float(os.environ.get("GROUND_TRUTH_DRAIN_TIMEOUT_S", "600"))


def make_workload(seed: int) -> Workload:
    # Deletions at 2 % (default 0.5 %) so that the small default size still deletes a few customers.
    config = WorkloadConfig(
        start=time.time() - (DAYS + 1) * 86400, customers=CUSTOMERS, days=DAYS, seed=seed, deletion_rate=0.02
    )
    workload = generate_workload(config)
    truth = workload.truth
    assert any(customer["deleted"] for customer in truth["profiles"])
    assert any(customer["refunds"] for customer in truth["profiles"])
    assert any(len(customer["anonymous_ids"]) > 1 for customer in truth["profiles"])
    return workload


def assert_matches_truth(pipeline: Pipeline, workload: Workload) -> None:
    problems = profile_mismatches(pipeline.worker, workload)
    assert not problems, f"{len(problems)} differences from the ground truth:\n" + "\n".join(problems[:20])


def test_every_profile_equals_the_ground_truth(make_pipeline):
    workload = make_workload(seed=11)
    pipeline = make_pipeline(**SETTINGS)
    started = time.monotonic()
    sent = produce_raw_lines(pipeline, workload.lines)
    produced_s = time.monotonic() - started
    drained_s = wait_until_drained(pipeline, timeout_s=DRAIN_TIMEOUT_S)
    metrics = read_metrics(pipeline.worker)
    assert metric_sum(metrics, "streamcdp_events_ingested_total") == sent == workload.truth["events"]
    checked = time.monotonic()
    assert_matches_truth(pipeline, workload)
    print(
        f"\n{CUSTOMERS} customers × {DAYS:g} days: {sent} events produced in {produced_s:.1f} s, drained in "
        f"{drained_s:.1f} s ({sent / (produced_s + drained_s):.0f} events/s), checked in "
        f"{time.monotonic() - checked:.1f} s"
    )


def test_ground_truth_holds_after_a_kill9_midway_and_a_restart(make_pipeline):
    workload = make_workload(seed=12)
    pipeline = make_pipeline(**SETTINGS)
    worker = pipeline.worker
    started = time.monotonic()
    sent = produce_raw_lines(pipeline, workload.lines)
    killed_at = wait_for_ingested(pipeline, sent // 2, timeout_s=DRAIN_TIMEOUT_S)
    worker.kill9()  # mid-backlog: tables, changelogs, forwards and offset commits all in flight
    restarted = time.monotonic()
    worker.start()
    ready_s = time.monotonic() - restarted
    drained_s = wait_until_drained(pipeline, timeout_s=DRAIN_TIMEOUT_S)
    # What the restarted worker saw again (its counters start at zero): replays, told apart as duplicates.
    metrics = read_metrics(worker)
    replayed = metric_sum(metrics, "streamcdp_events_ingested_total")
    duplicates = metric_sum(metrics, "streamcdp_profile_outcomes_total", outcome="duplicate")
    assert_matches_truth(pipeline, workload)
    print(
        f"\nrestarted worker ingested {replayed:.0f} events (≈ {replayed - (sent - killed_at):.0f} of them again), "
        f"{duplicates:.0f} recognised as duplicates"
    )
    print(
        f"killed after {killed_at:.0f} of {sent} events ingested; ready again {ready_s:.1f} s after the "
        f"restart, drained {drained_s:.1f} s later; {time.monotonic() - started:.1f} s in all"
    )
