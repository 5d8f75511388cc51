"""The audience refresh alone: record every ``refresh_audiences`` call of the profile stage, replay it, time it.

``step_bench.py`` measures the refresh inside whole ``step_key`` runs. This records, in one tree, each
call's inputs (the profile and ``now``) and its answer over step_bench's workload (the ``streamcdp generate``
workload, keyed as the identity stage keys it) run with the worker's policy (``stage_policy(Settings())``,
so every event more than ``audience_min_interval_s`` after its customer's last refresh refreshes), and every
``step_key`` result of that run. The replay, in any tree, calls ``refresh_audiences`` on each recorded input:
every answer must be the same (and unchanged profiles returned as the same object, as the stage relies
on), and so must every ``step_key`` result of the workload run again; then it times the calls in thread CPU
time (other processes' use of the cores does not count), chunk by chunk, best of ``--repeats``.

Run::

    .venv/bin/python bench/audience_replay.py record calls.pickle [--customers 100 --days 15]
    .venv/bin/python bench/audience_replay.py replay calls.pickle [--repeats 5]

Record in the "before" tree, replay in both (the pickle holds the profiles; the policies are rebuilt from
default ``Settings`` in the replaying tree).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core.profile_stage
from core.audiences import refresh_audiences
from core.profile_stage import KeyState, StagePolicy, step_key
from streams.settings import Settings
from streams.stage_config import stage_policy

CHUNK = 250


def run_workload(policy: StagePolicy, customers: int, days: float) -> list:
    """Every ``step_key`` result of the workload, in order (each key's state carried as the worker does)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from step_bench import keyed_commands

    states: dict[str, KeyState] = {}
    results = []
    for key, command, now in keyed_commands(customers, days):
        state = states.get(key) or KeyState(key=key)
        result = step_key(state, command, now=now, policy=policy)
        states[key] = result.state
        results.append(result)
    return results


def record(path: Path, *, customers: int, days: float) -> None:
    policy = stage_policy(Settings())
    calls: list = []

    def recorded(profile, *, now, policy, profile_policy):
        update = refresh_audiences(profile, now=now, policy=policy, profile_policy=profile_policy)
        calls.append((profile, now, update))
        return update

    core.profile_stage.refresh_audiences = recorded
    try:
        steps = run_workload(policy, customers, days)
    finally:
        core.profile_stage.refresh_audiences = refresh_audiences
    with path.open("wb") as out:
        pickle.dump({"customers": customers, "days": days, "calls": calls, "steps": steps}, out, protocol=5)
    print(f"{len(calls)} refresh_audiences calls and {len(steps)} step_key results recorded")


def replay(path: Path, *, repeats: int) -> None:
    with path.open("rb") as source:
        recording = pickle.load(source)  # a file this script wrote
    policy = stage_policy(Settings())
    audiences, profile_policy = policy.audiences, policy.profile
    calls = recording["calls"]
    different = 0
    for profile, now, expected in calls:
        update = refresh_audiences(profile, now=now, policy=audiences, profile_policy=profile_policy)
        same_object = (update.profile is profile) == (expected.profile is profile)
        # Struct equality, field by field (an encoding would tell a default that came back from the pickle as
        # another object apart).
        different += update.profile != expected.profile or update.changes != expected.changes or not same_object
    steps = run_workload(policy, recording["customers"], recording["days"])
    steps_different = sum(step != expected for step, expected in zip(steps, recording["steps"], strict=True))
    chunks = [calls[start : start + CHUNK] for start in range(0, len(calls), CHUNK)]
    best = [float("inf")] * len(chunks)
    for _ in range(repeats):
        for index, chunk in enumerate(chunks):
            started = time.thread_time()
            for profile, now, _ in chunk:
                refresh_audiences(profile, now=now, policy=audiences, profile_policy=profile_policy)
            best[index] = min(best[index], time.thread_time() - started)
    print(f"{len(calls)} calls, {different} answers differ from the recording")
    print(f"{len(steps)} step_key results, {steps_different} differ from the recording")
    print(f"refresh_audiences {sum(best) / len(calls) * 1e6:.2f} us/call (thread CPU, best of {repeats} per chunk)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "replay"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--days", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.action == "record":
        record(args.path, customers=args.customers, days=args.days)
    else:
        replay(args.path, repeats=args.repeats)


if __name__ == "__main__":
    main()
