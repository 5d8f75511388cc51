"""Issue 10 item 5, the chaos test: kill -9 the worker while events arrive, wipe its disk, restart the broker.

A seeded generated workload with ground truth (``offline.generator``) is produced, paced, WHILE the worker
runs. Meanwhile the worker is killed with SIGKILL ``CHAOS_KILLS`` times at seeded random moments (spread
over the production), ``CHAOS_WIPES`` of those kills also delete its data directory (the restart restores
from the changelog), and the broker is stopped and started again once (same ports and data directory)
halfway through. A worker that exits by itself during the broker restart is restarted, as a supervisor
would, and counted. After the worker has drained everything:

- every profile equals the generator's truth (counts, orders, revenue, refunds, links, deletions);
- the trigger messages and segment changes, read with ``isolation_level=read_committed``, hold no
  duplicate (a trigger id twice; a segment change twice, or an entry / exit repeated with no change in
  between);
- segment membership replayed from ``segments.changes`` equals the profiles' ``segments`` (profiles read
  from the state changelog after a clean stop, so every profile is seen, anonymous visitors included);
- ``/segments`` sizes and the stored ``SEGMENT_SIZES`` equal those members;
- no profile has an overdue segment refresh (``audience_due_at`` in the past) without a wake-up at or
  before it in the wake-up table (``WAKE_UPS`` in the same changelog), nor a pending one;
- the trigger messages (id, kind) and segment changes (customer, segment, direction, time) are those of
  an undisturbed run of the same history (a second deployment, same workload, no kills); the membership,
  size and wake-up checks run on that undisturbed run too.

With ``at_least_once`` (``STREAMCDP_PROCESSING_GUARANTEE``) the no-duplicate checks and the disturbed run's
membership and size checks are expected to fail (``xfail``, not strict: they often pass at CI size). The
comparison with the undisturbed run is an ``xfail`` in both modes, for a reason of this workload, not of
the worker: it is a month-old history produced in paced chunks *while* the worker runs, so between chunks
a caught-up partition fires its timers by the wall clock (as live traffic needs: a quiet shop's reminder
must still go) and its stream time moves there, and an input that is caught up is not waited for (the
next chunk of another topic is not written yet); the decisions then depend on when the worker caught up.
``test_event_time.py`` makes that comparison on a history complete in Kafka, through kills, a wipe and a
broker restart, and it holds.

Size: CI-sized by default (200 customers × 30 days ≈ 19,000 events, 3 kills of which 1 wipes, 1 broker
restart; about 3 minutes on the 2-core CI machine, most of it worker and broker restarts). Environment
variables change it: ``CHAOS_CUSTOMERS``, ``CHAOS_DAYS``, ``CHAOS_KILLS``, ``CHAOS_WIPES``, ``CHAOS_SEED``,
``CHAOS_PRODUCE_S`` (how long the paced production lasts), ``CHAOS_DRAIN_TIMEOUT_S``, ``CHAOS_BROKER_RESTARTS``
(1, or 0 to tell a failure caused by the kills from one caused by the broker restart). Full size, by hand
(about 13 minutes):
``CHAOS_CUSTOMERS=2000 CHAOS_KILLS=20 CHAOS_WIPES=4 CHAOS_PRODUCE_S=200 pytest -s -rA tests/integration/test_chaos.py``.
Figures (events, kills, mismatches, duplicates, differences from the undisturbed run) are printed (``-s``).
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pytest
from conftest import (
    Pipeline,
    PipelineFactory,
    produce_raw_lines,
    profile_mismatches,
    read_to_end,
    restart_test_broker,
    wait_until_drained,
)

from agents.tables import PROFILES, SEGMENT_SIZES, WAKE_UPS
from offline.generator import Workload, WorkloadConfig, generate_workload
from schemas.profile import Profile
from streams.settings import Settings

pytestmark = pytest.mark.integration

CUSTOMERS = int(os.environ.get("CHAOS_CUSTOMERS", "200"))
DAYS = float(os.environ.get("CHAOS_DAYS", "30"))
KILLS = int(os.environ.get("CHAOS_KILLS", "3"))
WIPES = int(os.environ.get("CHAOS_WIPES", "1"))
SEED = int(os.environ.get("CHAOS_SEED", "10"))
BROKER_RESTARTS = int(os.environ.get("CHAOS_BROKER_RESTARTS", "1"))  # 0 or 1
PRODUCE_S = float(os.environ.get("CHAOS_PRODUCE_S", str(max(15.0, 5.0 * KILLS))))
DRAIN_TIMEOUT_S = float(os.environ.get("CHAOS_DRAIN_TIMEOUT_S", "600"))
CHUNKS = 40  # the workload is produced in this many paced chunks
SETTLE_S = 3.0  # after draining: time for the clock to fire what is due (cart reminders, segment wake-ups)
# Outputs are exactly once when the runtime has the mode of issue 10 item 2 and it is the default.
_GUARANTEE = Settings.model_fields.get("processing_guarantee")
EXACTLY_ONCE = _GUARANTEE is not None and _GUARANTEE.default == "exactly_once"
AT_LEAST_ONCE_REASON = (
    "needs exactly-once outputs (issue 10 item 2): at least once, a kill after the outbox was sent and "
    "before the state was stored sends the replay's outputs again"
)
NON_ATOMIC_FLUSH_REASON = (
    "needs exactly-once outputs and atomic flushes (issue 10 item 2): a kill can leave segment changes sent "
    "whose state was not stored (the replay decides otherwise, no exit follows), and a partition's changelog "
    "cut between producer batches (profiles stored, the SEGMENT_SIZES deltas not, or the reverse)"
)


def make_workload() -> Workload:
    config = WorkloadConfig(
        start=time.time() - (DAYS + 1) * 86400, customers=CUSTOMERS, days=DAYS, seed=SEED, deletion_rate=0.02
    )
    return generate_workload(config)


@dataclass
class Outputs:
    """What a deployment published (read committed) and the state it left in its changelog."""

    triggers: list[dict]
    audience_changes: list[dict]  # segments.changes in offset order per partition (one customer: one partition)
    profiles: dict[str, Profile]
    wake_ups: dict[str, float]
    segment_sizes: dict[str, int]  # the SEGMENT_SIZES table, summed over partitions
    stopped_at: float

    @property
    def segment_changes(self) -> list[dict]:
        return [change for change in self.audience_changes if change.get("kind") == "segment"]


@dataclass
class Kill:
    number: int
    produced: int  # events produced when it happened
    wiped: bool


@dataclass
class ChaosRun:
    workload: Workload
    undisturbed: Outputs | None = None
    disturbed: Outputs | None = None
    mismatches: list[str] = field(default_factory=list)
    listed_sizes: dict[str, int] = field(default_factory=dict)  # /segments just before the clean stop
    kills: list[Kill] = field(default_factory=list)
    restart_s: list[float] = field(default_factory=list)  # kill → ready again, per kill
    broker_away_s: float = 0.0
    unplanned_exits: int = 0
    open_transactions: dict[str, tuple[int, int]] = field(default_factory=dict)  # "topic-p": (stable, high)


class PacedProducer(threading.Thread):
    """Produces the workload in ``KILLS + 1`` stages of paced chunks (``PRODUCE_S`` in all), each chunk acked
    before the next. Stage *i* starts only once ``allow(i)`` was called (the worker is up again after the
    previous kill), so every kill falls while events are arriving and events keep arriving while the
    worker is down. ``pause`` is held while a chunk is sent: the broker restarts between chunks (the
    test's producer is not under test, the worker is)."""

    def __init__(self, pipeline: Pipeline, lines: list[bytes], stages: int) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.pipeline = pipeline
        per_stage = -(-len(lines) // stages)
        self.stages = [lines[i : i + per_stage] for i in range(0, len(lines), per_stage)]
        self.stage_starts = [sum(len(stage) for stage in self.stages[:i]) for i in range(len(self.stages))]
        self.pause = threading.Lock()
        self.produced = 0
        self.error: BaseException | None = None
        self._allowed = 0
        self._allowed_changed = threading.Condition()

    def allow(self, stage: int) -> None:
        with self._allowed_changed:
            self._allowed = max(self._allowed, stage)
            self._allowed_changed.notify_all()

    def run(self) -> None:
        chunks_per_stage = max(1, CHUNKS // len(self.stages))
        gap = PRODUCE_S / (len(self.stages) * chunks_per_stage)
        try:
            for number, stage in enumerate(self.stages):
                with self._allowed_changed:
                    self._allowed_changed.wait_for(lambda n=number: self._allowed >= n, timeout=DRAIN_TIMEOUT_S)
                size = -(-len(stage) // chunks_per_stage)
                for chunk in (stage[i : i + size] for i in range(0, len(stage), size)):
                    started = time.monotonic()
                    with self.pause:
                        produce_raw_lines(self.pipeline, chunk)
                    self.produced += len(chunk)
                    time.sleep(max(0.0, gap - (time.monotonic() - started)))
        except BaseException as exc:  # noqa: BLE001  (re-raised by the test thread)
            self.error = exc


def drain(pipeline: Pipeline, run: ChaosRun | None = None) -> None:
    """Wait until the worker has committed everything; a worker that exited by itself (not killed by the
    test) is restarted once per exit and counted in ``run.unplanned_exits``."""
    for _ in range(5):
        try:
            wait_until_drained(pipeline, timeout_s=DRAIN_TIMEOUT_S)
            return
        except AssertionError:
            worker = pipeline.worker
            if run is None or worker.proc is None or worker.proc.poll() is None:
                raise
            run.unplanned_exits += 1
            worker.start()
    msg = f"the worker kept exiting; log:\n{pipeline.worker.log_tail()}"
    raise AssertionError(msg)


def settle_and_stop(pipeline: Pipeline, before_stop: Callable[[], None] = lambda: None) -> float:
    """Let the clock fire what is due, then stop the worker cleanly (its last flush reaches the changelog).

    ``before_stop`` runs once it has settled: a question to the running worker whose answer is compared with
    the state it stops with (asked before the clock has fired what is due, a wake-up in between would change
    a membership after the answer)."""
    time.sleep(SETTLE_S)
    wait_until_drained(pipeline, timeout_s=DRAIN_TIMEOUT_S, quiet_s=0.5)
    before_stop()
    pipeline.worker.stop()
    return time.time()


def collect_outputs(pipeline: Pipeline, stopped_at: float) -> Outputs:
    bootstrap, topics = pipeline.kafka.bootstrap, pipeline.topics
    triggers = [orjson.loads(r.value) for r in read_to_end(bootstrap, list(topics.all_triggers))]
    changes = [orjson.loads(r.value) for r in read_to_end(bootstrap, [topics.segment_changes])]
    state: dict[tuple[int, bytes], bytes | None] = {}
    for record in read_to_end(bootstrap, [topics.state_changelog(pipeline.settings.app_id)]):
        # The latest value per partition and key wins (None: deleted); SEGMENT_SIZES has a key per partition.
        state[(record.partition, record.key)] = record.value
    profiles: dict[str, Profile] = {}
    wake_ups: dict[str, float] = {}
    sizes: Counter[str] = Counter()
    for (_, key), raw in state.items():
        if raw is None:
            continue
        tag, name = key[:1], key[1:].decode()
        if tag == PROFILES.tag:
            profiles[name] = PROFILES.decode(raw)
        elif tag == WAKE_UPS.tag:
            wake_ups[name] = WAKE_UPS.decode(raw)
        elif tag == SEGMENT_SIZES.tag:
            sizes[name] += SEGMENT_SIZES.decode(raw)
    return Outputs(triggers, changes, profiles, wake_ups, dict(sizes), stopped_at)


def open_transactions(pipeline: Pipeline) -> dict[str, tuple[int, int]]:
    """Partitions the worker writes whose last stable offset is below the high watermark once it is
    drained: a transaction left open holds every read-committed reader (the worker's own input of
    ``profile-commands``, the restore, downstream senders) before its first record."""
    from kafka import KafkaConsumer, TopicPartition

    topics = pipeline.topics
    written = [topics.profile_commands, topics.state_changelog(pipeline.settings.app_id), topics.segment_changes]
    ends = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = KafkaConsumer(bootstrap_servers=pipeline.kafka.bootstrap, isolation_level=isolation)
        try:
            tps = [TopicPartition(t, p) for t in written for p in sorted(consumer.partitions_for_topic(t) or ())]
            ends[isolation] = consumer.end_offsets(tps)
        finally:
            consumer.close()
    stable, high = ends["read_committed"], ends["read_uncommitted"]
    return {f"{tp.topic}-{tp.partition}": (stable[tp], high[tp]) for tp in high if stable[tp] < high[tp]}


def listed_segment_sizes(pipeline: Pipeline) -> dict[str, int]:
    worker = pipeline.worker
    status, body = worker.http_get("/segments", token=worker.api_token)
    assert status == 200, (status, body)
    return {segment["name"]: segment["size"] for segment in orjson.loads(body)["segments"]}


def run_undisturbed(factory: PipelineFactory, workload: Workload) -> Outputs:
    pipeline = factory.make()
    produce_raw_lines(pipeline, workload.lines)
    drain(pipeline)
    return collect_outputs(pipeline, settle_and_stop(pipeline))


def run_with_chaos(factory: PipelineFactory, kafka_settings: Settings, workload: Workload) -> ChaosRun:
    rng = random.Random(f"chaos:{SEED}")
    wiped = set(rng.sample(range(KILLS), min(WIPES, KILLS)))
    broker_restart_after = KILLS // 2  # the broker restarts after this many kills (0: before the first)
    pipeline = factory.make()
    worker = pipeline.worker
    producer = PacedProducer(pipeline, workload.lines, KILLS + 1)
    run = ChaosRun(workload)
    producer.start()
    for number in range(KILLS + 1):
        if number == broker_restart_after and BROKER_RESTARTS:
            with producer.pause:
                run.broker_away_s = restart_test_broker(kafka_settings)
        if number == KILLS:
            producer.allow(number)
            break
        # A seeded random moment within this stage of the production.
        stage = producer.stages[number]
        target = producer.stage_starts[number] + rng.uniform(0.1, 0.9) * len(stage)
        while producer.produced < target and producer.is_alive():
            time.sleep(0.02)
        if worker.proc is not None and worker.proc.poll() is not None:
            run.unplanned_exits += 1  # exited by itself (e.g. a flush failed while the broker was away)
        worker.kill9()
        run.kills.append(Kill(number, producer.produced, number in wiped))
        if number in wiped:
            shutil.rmtree(pipeline.settings.data_dir, ignore_errors=True)
        started = time.monotonic()
        worker.start()
        run.restart_s.append(time.monotonic() - started)
        producer.allow(number + 1)
    producer.join(timeout=PRODUCE_S + DRAIN_TIMEOUT_S)
    if producer.error is not None:
        raise producer.error
    drain(pipeline, run)
    run.open_transactions = open_transactions(pipeline)
    run.mismatches = profile_mismatches(worker, workload)

    def ask_sizes() -> None:
        run.listed_sizes = listed_segment_sizes(pipeline)

    run.disturbed = collect_outputs(pipeline, settle_and_stop(pipeline, before_stop=ask_sizes))
    return run


@pytest.fixture(scope="module")
def chaos(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    factory = PipelineFactory(kafka_settings, tmp_path_factory.mktemp("chaos"))
    try:
        workload = make_workload()
        started = time.monotonic()
        undisturbed = run_undisturbed(factory, workload)
        undisturbed_s = time.monotonic() - started
        run = run_with_chaos(factory, kafka_settings, workload)
        run.undisturbed = undisturbed
        print(
            f"\nchaos: {len(workload.lines)} events of {CUSTOMERS} customers × {DAYS:g} days; undisturbed run "
            f"{undisturbed_s:.0f} s, chaos run {time.monotonic() - started - undisturbed_s:.0f} s; "
            f"{len(run.kills)} kills ({sum(k.wiped for k in run.kills)} with the data dir wiped) after "
            f"{[k.produced for k in run.kills]} events produced, ready again after "
            f"{[round(s, 1) for s in run.restart_s]} s; broker restart {run.broker_away_s:.1f} s; "
            f"{run.unplanned_exits} unplanned worker exit(s); {len(run.mismatches)} profile mismatches; "
            f"partitions held by an open transaction (stable, high): {run.open_transactions}"
        )
        yield run
    finally:
        factory.close()


# --- what the outputs say --------------------------------------------------------------------------------


def duplicate_triggers(outputs: Outputs) -> dict[str, int]:
    counts = Counter(trigger["trigger_id"] for trigger in outputs.triggers)
    return {trigger_id: n for trigger_id, n in counts.items() if n > 1}


def repeated_segment_changes(outputs: Outputs) -> tuple[int, list[tuple]]:
    """(identical records published more than once, entries / exits repeated with no change in between)."""
    identical = sum(
        n - 1 for n in Counter(orjson.dumps(c, option=orjson.OPT_SORT_KEYS) for c in outputs.segment_changes).values()
    )
    last: dict[tuple[str, str], str] = {}
    repeated: list[tuple] = []
    for change in outputs.segment_changes:
        slot = (change["customer_id"], change["segment"])
        if last.get(slot) == change["change"]:
            repeated.append((*slot, change["change"], change["at"]))
        last[slot] = change["change"]
    return identical, repeated


def members_from_changes(outputs: Outputs) -> set[tuple[str, str]]:
    last: dict[tuple[str, str], str] = {}
    for change in outputs.segment_changes:
        last[(change["customer_id"], change["segment"])] = change["change"]
    return {slot for slot, change in last.items() if change == "entered"}


def members_of_profiles(outputs: Outputs) -> set[tuple[str, str]]:
    return {(key, segment) for key, profile in outputs.profiles.items() for segment in profile.segments}


def show(items, limit: int = 10) -> str:
    items = sorted(items, key=str)
    return ", ".join(map(str, items[:limit])) + (f" … ({len(items)} in all)" if len(items) > limit else "")


# --- the assertions ----------------------------------------------------------------------------------------


def test_every_profile_equals_the_truth_after_kills_wipes_and_a_broker_restart(chaos):
    assert len(chaos.kills) == KILLS
    assert not chaos.mismatches, f"{len(chaos.mismatches)} differences from the truth:\n" + "\n".join(
        chaos.mismatches[:20]
    )


@pytest.mark.xfail(not EXACTLY_ONCE, reason=AT_LEAST_ONCE_REASON, strict=False)
def test_no_trigger_message_is_sent_twice(chaos):
    duplicates = duplicate_triggers(chaos.disturbed)
    print(f"\ntriggers: {len(chaos.disturbed.triggers)} messages, {len(duplicates)} ids more than once")
    assert not duplicates, f"{len(duplicates)} trigger ids sent more than once: {show(duplicates.items())}"


@pytest.mark.xfail(not EXACTLY_ONCE, reason=AT_LEAST_ONCE_REASON, strict=False)
def test_no_segment_change_is_published_twice(chaos):
    identical, repeated = repeated_segment_changes(chaos.disturbed)
    print(
        f"\nsegment changes: {len(chaos.disturbed.segment_changes)}, {identical} identical repeats, "
        f"{len(repeated)} entries/exits repeated with no change in between"
    )
    assert identical == 0
    assert not repeated, f"{len(repeated)} repeated entries/exits: {show(repeated)}"


def at_least_once_xfail(reason: str):
    """The disturbed run's parameter, expected to fail until outputs are exactly once (strict=False)."""
    return pytest.param("disturbed", marks=pytest.mark.xfail(not EXACTLY_ONCE, reason=reason, strict=False))


@pytest.mark.parametrize("run", ["undisturbed", at_least_once_xfail(NON_ATOMIC_FLUSH_REASON)])
def test_membership_replayed_from_segment_changes_equals_the_profiles(chaos, run):
    outputs = getattr(chaos, run)
    replayed, stored = members_from_changes(outputs), members_of_profiles(outputs)
    print(f"\n{run}: {len(stored)} memberships, {len(replayed ^ stored)} differ from segments.changes")
    assert stored, "no profile is in any segment: the test would prove nothing"
    assert replayed == stored, (
        f"members only in segments.changes: {show(replayed - stored)}; only in the profiles: {show(stored - replayed)}"
    )


def size_differences(sizes: dict[str, int], members: Counter) -> dict[str, tuple[int, int]]:
    return {
        name: (sizes.get(name, 0), members[name])
        for name in sorted({*sizes, *members})
        if sizes.get(name, 0) != members[name]
    }


@pytest.mark.parametrize("run", ["undisturbed", at_least_once_xfail(NON_ATOMIC_FLUSH_REASON)])
def test_segment_sizes_equal_the_members(chaos, run):
    """The stored sizes (``SEGMENT_SIZES``, after the clean stop) and, for the disturbed run, ``/segments``
    (asked just before it) count the members."""
    outputs = getattr(chaos, run)
    members = Counter(segment for _, segment in members_of_profiles(outputs))
    listed = size_differences(chaos.listed_sizes, members) if run == "disturbed" else {}
    stored = size_differences(outputs.segment_sizes, members)
    print(f"\n{run}: {len(listed)} segments whose /segments size differs, {len(stored)} whose stored size differs")
    assert not listed, f"/segments (size, members): {listed}"
    assert not stored, f"stored (size, members): {stored}"


def refreshes_without_a_wake_up(outputs: Outputs) -> tuple[dict, dict]:
    """(overdue at the stop, still pending): profiles whose segment refresh (``audience_due_at``) has no
    wake-up at or before it in the wake-up table. An overdue one is a lost wake-up: the clock never fires
    it and the profile keeps stale segments until its next event; a pending one will become one."""
    missing = {
        key: (profile.audience_due_at, outputs.wake_ups.get(key))
        for key, profile in outputs.profiles.items()
        if profile.audience_due_at is not None
        and (outputs.wake_ups.get(key) is None or outputs.wake_ups[key] > profile.audience_due_at)
    }
    overdue = {key: dues for key, dues in missing.items() if dues[0] <= outputs.stopped_at}
    pending = {key: dues for key, dues in missing.items() if dues[0] > outputs.stopped_at}
    return overdue, pending


@pytest.mark.parametrize("run", ["undisturbed", "disturbed"])
def test_no_overdue_refresh_without_a_wake_up(chaos, run):
    outputs = getattr(chaos, run)
    due = sum(profile.audience_due_at is not None for profile in outputs.profiles.values())
    overdue, pending = refreshes_without_a_wake_up(outputs)
    print(f"\n{run}: {due} refreshes pending, {len(overdue)} overdue and {len(pending)} later without a wake-up")
    assert not overdue, f"{len(overdue)} overdue refreshes without a wake-up (due, wake-up): {show(overdue.items())}"
    assert not pending, f"{len(pending)} pending refreshes without a wake-up (due, wake-up): {show(pending.items())}"


def output_differences(chaos: ChaosRun) -> dict[str, int]:
    def trigger_keys(outputs: Outputs) -> set[tuple]:
        return {(t["trigger_id"], t["kind"]) for t in outputs.triggers}

    def change_keys(outputs: Outputs) -> set[tuple]:
        return {(c["customer_id"], c["segment"], c["change"], c["at"]) for c in outputs.segment_changes}

    def coarse(outputs: Outputs) -> Counter:
        return Counter((c["customer_id"], c["segment"], c["change"]) for c in outputs.segment_changes)

    quiet, chaotic = chaos.undisturbed, chaos.disturbed
    return {
        "triggers_undisturbed": len(trigger_keys(quiet)),
        "triggers_only_undisturbed": len(trigger_keys(quiet) - trigger_keys(chaotic)),
        "triggers_only_disturbed": len(trigger_keys(chaotic) - trigger_keys(quiet)),
        "changes_undisturbed": len(change_keys(quiet)),
        "changes_only_undisturbed": len(change_keys(quiet) - change_keys(chaotic)),
        "changes_only_disturbed": len(change_keys(chaotic) - change_keys(quiet)),
        "changes_without_time_only_undisturbed": sum((coarse(quiet) - coarse(chaotic)).values()),
        "changes_without_time_only_disturbed": sum((coarse(chaotic) - coarse(quiet)).values()),
    }


@pytest.mark.xfail(
    reason="a month-old history produced while the worker runs: a caught-up partition fires its timers by the wall "
    "clock between chunks and does not wait for a topic whose next chunk is not written yet, so decisions depend on "
    "when it caught up (see the module docstring; test_event_time.py compares a history complete in Kafka)",
    strict=False,
)
def test_outputs_equal_those_of_an_undisturbed_run(chaos):
    differences = output_differences(chaos)
    print(f"\nagainst the undisturbed run: {differences}")
    assert differences["triggers_only_undisturbed"] == differences["triggers_only_disturbed"] == 0, differences
    assert differences["changes_only_undisturbed"] == differences["changes_only_disturbed"] == 0, differences
