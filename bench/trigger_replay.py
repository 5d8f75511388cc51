"""The trigger stage alone: record every ``advance_triggers`` call of the profile stage, replay it, time it.

``step_bench.py`` measures the stage as the difference of two whole ``step_key`` runs, which on a shared
machine drowns the trigger stage's few microseconds in the noise of the rest. This records, in one tree,
each call's inputs and answer over the generated workload (the ``streamcdp generate`` workload, keyed as
the identity stage keys it, as in ``step_bench.py``), then replays the inputs in any tree: every answer
must be the same (the decisions of two versions compared call by call) and the replay is timed in thread
CPU time (other processes' use of the cores does not count), chunk by chunk, best of ``--repeats``.

Run::

    .venv/bin/python bench/trigger_replay.py record calls.pickle [--audiences] [--customers 200 --days 30]
    .venv/bin/python bench/trigger_replay.py replay calls.pickle [--repeats 3] [--by-path]

Record in the "before" tree, replay in both (the pickle holds the profiles and events; the policy is
rebuilt from default ``Settings`` in the replaying tree). Each call is replayed as the profile stage makes it:
in trees that have ``refresh_may_enter``, a refreshed event that lets nothing rule-only enter is replayed
unrefreshed (and answered by ``nothing_to_advance`` where that answers); then its check before the call first
in trees that have one (``quiet_event`` and ``waiting_wake``, earlier
``untouched_wake``: an event that can touch no pending trigger is answered there; a tree that has it records
only the calls it lets through), then ``advance_triggers``. ``--by-path`` also
prints where the time goes: the calls grouped by what their recorded answer did (sent, recorded another
outcome, entered or renewed, left a pending trigger untouched, found nothing), each call's best of
``--repeats`` (``perf_counter``).
"""

from __future__ import annotations

import argparse
import collections
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core.profile_stage
import core.triggers.engine
from core.profile_stage import KeyState, StagePolicy, step_key
from core.triggers.engine import TriggerStep, advance_triggers
from streams.settings import Settings
from streams.stage_config import stage_policy

CHUNK = 250


def record(path: Path, *, audiences: bool, customers: int, days: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from step_bench import keyed_commands

    worker = stage_policy(Settings())
    policy = worker if audiences else StagePolicy(triggers=worker.triggers, profile=worker.profile)
    calls: list = []

    def recorded(profile, **kwargs):
        step = advance_triggers(profile, **kwargs)
        # The stage's dispatch (``quiet``) is not recorded: ``stage_call`` asks it again in the replaying tree.
        calls.append((profile, {k: v for k, v in kwargs.items() if k not in {"policy", "quiet"}}, step))
        return step

    core.profile_stage.advance_triggers = recorded
    states: dict[str, KeyState] = {}
    for key, command, now in keyed_commands(customers, days):
        state = states.get(key) or KeyState(key=key)
        states[key] = step_key(state, command, now=now, policy=policy).state
    with path.open("wb") as out:
        pickle.dump(calls, out, protocol=5)  # one dump: shared objects stay shared (the engine compares by identity)
    print(f"{len(calls)} advance_triggers calls recorded ({'audiences' if audiences else 'no audiences'})")


def _dispatch_of_the_tree() -> str:
    """The profile stage's check before the call in this tree: ``quiet_event`` then ``waiting_wake`` (the call
    told their answer), ``untouched_wake`` (trees before that), or none (the call alone)."""
    engine = core.triggers.engine
    if hasattr(engine, "quiet_event"):
        return "quiet_event and waiting_wake"
    if hasattr(engine, "untouched_wake"):
        return "untouched_wake"
    return ""


DISPATCH = _dispatch_of_the_tree()  # found once: a failed ``hasattr`` per call would cost the older trees more
REFRESH_CHECK = hasattr(core.triggers.engine, "refresh_may_enter")  # the profile stage asks it first


def stage_call(profile, policy, kwargs: dict):
    """What the profile stage asks for a recorded call: its check before the call (where the tree has one),
    the call itself only when that does not answer."""
    engine = core.triggers.engine
    # The profile stage's check of a refresh (``refresh_may_enter``), then ``nothing_to_advance`` again: a
    # refresh that lets nothing rule-only enter leaves the event's own paths.
    event = kwargs["event"]
    if (
        REFRESH_CHECK
        and kwargs["refreshed"]
        and event is not None
        and not engine.refresh_may_enter(profile, event, at=kwargs["at"], policy=policy)
    ):
        kwargs = {**kwargs, "refreshed": False}
        if engine.nothing_to_advance(profile, event, refreshed=False, policy=policy):
            return TriggerStep(profile)
    if DISPATCH == "quiet_event and waiting_wake":
        quiet = engine.quiet_event(profile, kwargs["event"], refreshed=kwargs["refreshed"], policy=policy)
        if quiet:
            wake = engine.waiting_wake(profile, kwargs["before"], at=kwargs["at"], policy=policy)
            if wake is not None:
                return TriggerStep(profile, due_at=wake)
        return advance_triggers(profile, policy=policy, quiet=quiet, **kwargs)
    if DISPATCH == "untouched_wake":
        wake = engine.untouched_wake(
            profile,
            kwargs["before"],
            kwargs["event"],
            at=kwargs["at"],
            refreshed=kwargs["refreshed"],
            policy=policy,
        )
        if wake is not None:
            return TriggerStep(profile, due_at=wake)
    return advance_triggers(profile, policy=policy, **kwargs)


def replay(path: Path, *, repeats: int, by_path: bool = False) -> None:
    with path.open("rb") as source:
        calls = pickle.load(source)  # a file this script wrote
    policy = stage_policy(Settings()).triggers
    if policy is None:
        message = "no trigger definitions in the default settings: nothing to replay"
        raise SystemExit(message)
    different = 0
    for profile, kwargs, expected in calls:
        step = stage_call(profile, policy, kwargs)
        same_object = (step.profile is profile) == (expected.profile is profile)
        # Struct equality, field by field: comparing encodings would count a default value that came back from
        # the pickle as a different object (``omit_defaults`` omits a float default by identity) as a difference.
        different += step != expected or not same_object
    chunks = [calls[start : start + CHUNK] for start in range(0, len(calls), CHUNK)]
    best = [float("inf")] * len(chunks)
    for _ in range(repeats):
        for index, chunk in enumerate(chunks):
            started = time.thread_time()
            for profile, kwargs, _ in chunk:
                stage_call(profile, policy, kwargs)
            best[index] = min(best[index], time.thread_time() - started)
    print(f"{len(calls)} calls, {different} answers differ from the recording")
    stage = f"{DISPATCH}, then advance_triggers" if DISPATCH else "advance_triggers"
    print(f"{stage} {sum(best) / len(calls) * 1e6:.2f} us/call (thread CPU, best of {repeats} per chunk)")
    if by_path:
        print_paths(calls, policy, repeats)


PATHS = (
    "send (a due trigger decided: guards, payload)",
    "record another outcome (exit, superseded, deferred, blocked)",
    "enter or renew a pending trigger",
    "leave a pending trigger untouched",
    "nothing pending and nothing to enter",
)


def path_of(profile, step) -> str:
    """What a call did, from its recorded answer (one of ``PATHS``)."""
    if step.triggers:
        return PATHS[0]
    if step.outcomes:
        return PATHS[1]
    if step.profile is not profile:
        return PATHS[2]
    return PATHS[3] if profile.pending_triggers else PATHS[4]


def print_paths(calls: list, policy, repeats: int) -> None:
    """Each path's calls, µs per call and µs per call of the workload (each call's best of ``repeats``)."""
    best = [float("inf")] * len(calls)
    for _ in range(repeats):
        for index, (profile, kwargs, _) in enumerate(calls):
            started = time.perf_counter()
            stage_call(profile, policy, kwargs)
            best[index] = min(best[index], time.perf_counter() - started)
    count: collections.Counter[str] = collections.Counter()
    spent: collections.defaultdict[str, float] = collections.defaultdict(float)
    for (profile, _, step), seconds in zip(calls, best, strict=True):
        path = path_of(profile, step)
        count[path] += 1
        spent[path] += seconds
    print(f"by path (each call's best of {repeats}, perf_counter): calls, us per call, us per call of the workload")
    for path in PATHS:
        if count[path]:
            per_call = spent[path] / count[path] * 1e6
            print(f"  {path:62s} {count[path]:6d} {per_call:7.1f} {spent[path] / len(calls) * 1e6:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "replay"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--audiences", action="store_true", help="record with the worker's audiences")
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--by-path", action="store_true", help="replay: also the time by what each call did")
    args = parser.parse_args()
    if args.action == "record":
        record(args.path, audiences=args.audiences, customers=args.customers, days=args.days)
    else:
        replay(args.path, repeats=args.repeats, by_path=args.by_path)


if __name__ == "__main__":
    main()
