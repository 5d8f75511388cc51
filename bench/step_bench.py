"""How long the profile stage's pure step takes per event, with the worker's segments and scores.

Run: ``.venv/bin/python bench/step_bench.py [customers] [days]``. Events come from ``offline.generator``
(the ``streamcdp generate`` workload), keyed by customer as the identity stage would key them; each key's
state is carried from event to event as the worker carries it. The first third of the events warms the
profiles up (untimed); the rest are timed. Prints microseconds per event: the sum over chunks of 250
events of each chunk's best of 5 runs (a machine busy with other work slows some runs of some chunks,
rarely all five), in thread CPU time (what other processes take of the cores does not count):

- ``step_key, no audiences, no triggers``: ``StagePolicy(audiences=None, triggers=None)``;
- ``step_key, no audiences``: the same with the worker's trigger definitions (``config/triggers.yaml``);
- ``step_key, audiences, no triggers``: the worker's policy without triggers;
- ``step_key, audiences``: the worker's policy (``streams.stage_config`` from default ``Settings``), with
  ``now`` the event's time, so every event more than ``audience_min_interval_s`` after the last refresh
  refreshes — the worst case, close to a live stream of sparse customers;
- the trigger stage's cost: ``audiences`` minus ``audiences, no triggers``, and ``no audiences`` minus
  ``no audiences, no triggers``. The two runs of each pair are interleaved chunk by chunk (one chunk
  without triggers, the same chunk with, the order swapped every repeat), so both see the same machine;
- ``refresh_audiences`` alone, on each timed event's resulting profile.

``--by-path`` (after the two numbers): instead, the trigger stage's own calls (``_advance_triggers``, without
audiences) over the timed events, each call's best of 5 (``perf_counter``), grouped by what the call did
(nothing to do, only the wake-up changed, an entry or renewal, another outcome, a send) and by event name.
``--in-context [--audiences]``: instead, ``step_key`` without audiences (with the worker's, as on live traffic, with
``--audiences``) four ways, interleaved chunk by chunk: with
triggers; with the trigger stage's answers looked up (recorded in a first run); without the stage, from the
profiles the triggers left after the warm-up (their trigger state carried, the attribution of responses run,
nothing advanced); and without triggers. The first minus the third is the stage in the step's context, the third
minus the fourth what the rest of the step costs more on the profiles the triggers leave. (Round 7 took the
second for the third: the looked-up answers carry the recording run's profiles from event to event, and the rest
of the step runs slower on those, 2–3 µs/event, see Round 8 in bench/README.md: that was no cost of the stage's
state.)
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import core.profile_stage
from core.audiences import refresh_audiences
from core.profile_stage import KeyState, StagePolicy, step_key
from offline.generator import WorkloadConfig, generate_workload
from offline.training import ReplayStats, customer_of, decode_lines, identity_map
from schemas.commands import ApplyEvent
from schemas.events import Event
from schemas.profile import Profile
from streams.settings import Settings
from streams.stage_config import stage_policy

REPEATS = 5
CHUNK = 250  # events timed together; each chunk's best run counts, so a pause of the machine skews one run only


def keyed_commands(customers: int, days: float) -> list[tuple[str, ApplyEvent, float]]:
    """``(key, command, now)`` in time order for a generated workload."""
    workload = generate_workload(WorkloadConfig(start=1_700_000_000.0, customers=customers, days=days, seed=5))
    events: list[Event] = decode_lines(workload.lines, ReplayStats())
    links = identity_map(events)
    return [(customer_of(event, links), ApplyEvent(event=event), event.timestamp) for event in events]


def run(commands, states: dict[str, KeyState], policy: StagePolicy) -> dict[str, KeyState]:
    for key, command, now in commands:
        state = states.get(key) or KeyState(key=key)
        states[key] = step_key(state, command, now=now, policy=policy).state
    return states


def best_us(measure: Callable[[list], None], items: list, restart: Callable[[], None] = lambda: None) -> float:
    """µs per item of ``measure`` over ``items`` in order, chunk by chunk: the sum of each chunk's best time.

    ``restart`` is called before each repeat (to start from the same state).
    """
    return paired_best_us((measure,), items, (restart,))[0]


def paired_best_us(
    measures: tuple[Callable[[list], None], ...], items: list, restarts: tuple[Callable[[], None], ...]
) -> list[float]:
    """``best_us`` of several measures over the same items, interleaved: each chunk is run by every measure
    in turn (the order rotated every repeat) before the next chunk, so a busy spell of the machine falls on
    all of them alike. Thread CPU time: other processes' use of the cores does not count."""
    chunks = [items[start : start + CHUNK] for start in range(0, len(items), CHUNK)]
    best = [[float("inf")] * len(chunks) for _ in measures]
    order = list(range(len(measures)))
    for repeat in range(REPEATS):
        for which in order:
            restarts[which]()
        for index, chunk in enumerate(chunks):
            for which in order[repeat % len(order) :] + order[: repeat % len(order)]:
                started = time.thread_time()
                measures[which](chunk)
                best[which][index] = min(best[which][index], time.thread_time() - started)
    return [sum(times) / len(items) * 1e6 for times in best]


def paired_step_us(warm, timed, without: StagePolicy, with_: StagePolicy) -> tuple[float, float, dict[str, KeyState]]:
    """``step_key`` over ``timed`` with two policies, interleaved chunk by chunk (``paired_best_us``), each
    repeat from the same warmed-up states (each policy's own); the warmed states of ``with_``."""
    measures, restarts, warmed_states = [], [], []
    for policy in (without, with_):
        warmed = run(warm, {}, policy)
        states: dict[str, KeyState] = {}

        def restart(states=states, warmed=warmed) -> None:
            states.clear()
            states.update(warmed)

        measures.append(lambda chunk, states=states, policy=policy: run(chunk, states, policy))
        restarts.append(restart)
        warmed_states.append(warmed)
    first, second = paired_best_us(tuple(measures), timed, tuple(restarts))
    return first, second, warmed_states[1]


def refresh_inputs(timed, warmed: dict[str, KeyState], policy: StagePolicy) -> list[tuple[Profile, float]]:
    """The profile each timed event leaves (before its refresh), as ``refresh_audiences`` would see it."""
    plain = StagePolicy(triggers=policy.triggers, profile=policy.profile)
    states = dict(warmed)
    inputs = []
    for key, command, now in timed:
        state = states.get(key) or KeyState(key=key)
        after = step_key(state, command, now=now, policy=plain).state
        if after.profile is not None:
            inputs.append((after.profile, now))
        states[key] = step_key(state, command, now=now, policy=policy).state
    return inputs


def stage_path(result, answer) -> str:
    """What one ``_advance_triggers`` call did, from its input ``result`` and its ``answer``."""
    if answer is result:
        return "nothing to do"
    if answer.state is result.state:
        return "only the wake-up changed"
    if len(answer.triggers) > len(result.triggers):
        return "a send (guards, payload)"
    return "another outcome (exit, superseded, deferred...)" if answer.trigger_outcomes else "an entry or renewal"


def print_stage_paths(warm, timed) -> None:
    """``--by-path``: the trigger stage's calls over ``timed``, each call's best of ``REPEATS``, by what it did."""
    policy = stage_policy(Settings())
    plain = StagePolicy(triggers=policy.triggers, profile=policy.profile)
    warmed = run(warm, {}, plain)
    advance = core.profile_stage._advance_triggers
    best: dict[int, tuple[float, str, str]] = {}

    def timed_advance(before, command, result, **kwargs):
        started = time.perf_counter()
        answer = advance(before, command, result, **kwargs)
        seconds = time.perf_counter() - started
        event = command.event
        name = event.event if event.type == "track" else event.type
        key = id(command)
        if key not in best or seconds < best[key][0]:
            best[key] = (seconds, name, stage_path(result, answer))
        return answer

    core.profile_stage._advance_triggers = timed_advance
    try:
        for _ in range(REPEATS):
            run(timed, dict(warmed), plain)
    finally:
        core.profile_stage._advance_triggers = advance
    spent: collections.defaultdict[tuple[str, str], float] = collections.defaultdict(float)
    calls: collections.Counter[tuple[str, str]] = collections.Counter()
    for seconds, name, path in best.values():
        spent[name, path] += seconds
        calls[name, path] += 1
    per_event = 1e6 / len(timed)
    print(f"the trigger stage's calls over {len(timed)} timed events (best of {REPEATS} per call, perf_counter)")
    print(f"  in all {sum(spent.values()) * per_event:6.2f} µs/event")
    paths = sorted({path for _, path in spent}, key=lambda path: -sum(v for k, v in spent.items() if k[1] == path))
    for path in paths:
        seconds = sum(v for k, v in spent.items() if k[1] == path)
        count = sum(v for k, v in calls.items() if k[1] == path)
        print(f"  {path:50s} {count:5d} calls {seconds / count * 1e6:6.1f} µs/call {seconds * per_event:5.2f} µs/event")
    print("  the largest by event name:")
    for key in sorted(spent, key=lambda key: -spent[key])[:12]:
        name, path = key
        per_call = spent[key] / calls[key] * 1e6
        print(f"    {name:20s} {path:50s} {calls[key]:5d} calls {per_call:6.1f} µs/call {spent[key] * per_event:5.2f}")


def print_in_context(warm, timed, *, audiences: bool = False) -> None:
    """``--in-context``: the trigger stage's share of ``step_key``, and what the rest of the step costs more on the
    profiles the triggers leave. ``audiences``: with the worker's segments and scores (its whole policy), as on
    live traffic: the refreshed events ask the rule-only entries, and the scores let ``high_intent_offer`` and
    ``win_back`` enter, which they never do without them."""
    policy = stage_policy(Settings())
    if audiences:
        bare, plain = dataclasses.replace(policy, triggers=None), policy
    else:
        bare = StagePolicy(profile=policy.profile)
        plain = StagePolicy(triggers=policy.triggers, profile=policy.profile)
    warmed, warmed_bare = run(warm, {}, plain), run(warm, {}, bare)
    advance = core.profile_stage._advance_triggers
    answers: dict[int, object] = {}

    def recording(before, command, result, **kwargs):
        answers[id(command)] = answer = advance(before, command, result, **kwargs)
        return answer

    def looked_up(before, command, result, **kwargs):
        return answers[id(command)]

    core.profile_stage._advance_triggers = recording
    try:
        run(timed, dict(warmed), plain)
        # With triggers; their answers looked up; no trigger stage from the profiles the triggers left after the
        # warm-up (pending triggers, history and sends carried, attribution run, nothing advanced); no triggers.
        ways = (
            (advance, plain, warmed),
            (looked_up, plain, warmed),
            (advance, bare, warmed),
            (advance, bare, warmed_bare),
        )
        states: list[dict[str, KeyState]] = [{} for _ in ways]

        def measure(which: int) -> Callable[[list], None]:
            stage, policy_, _ = ways[which]

            def measured(chunk: list) -> None:
                core.profile_stage._advance_triggers = stage
                run(chunk, states[which], policy_)

            return measured

        def restart(which: int) -> Callable[[], None]:
            def restarted() -> None:
                states[which].clear()
                states[which].update(ways[which][2])

            return restarted

        computed, memoised, carried, untriggered = paired_best_us(
            tuple(measure(which) for which in range(len(ways))), timed, tuple(restart(w) for w in range(len(ways)))
        )
    finally:
        core.profile_stage._advance_triggers = advance
    which = "with the worker's audiences" if audiences else "without audiences"
    print(f"{len(timed)} timed events, step_key {which}, best of {REPEATS} per chunk of {CHUNK}, thread CPU")
    print(f"  with triggers                                     {computed:6.1f} µs/event")
    print(f"  with the trigger stage's answers looked up        {memoised:6.1f} µs/event")
    print(f"  without the stage, on the profiles triggers leave {carried:6.1f} µs/event")
    print(f"  without triggers                                  {untriggered:6.1f} µs/event")
    print(f"  the trigger stage in context                      {computed - carried:6.1f} µs/event")
    print(f"  the rest of the step, more on those profiles      {carried - untriggered:6.1f} µs/event")
    print(f"  the looked-up answers, more than no stage         {memoised - carried:6.1f} µs/event")


def main() -> None:
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    days = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    commands = keyed_commands(customers, days)
    if "--by-path" in sys.argv[3:]:
        print_stage_paths(commands[: len(commands) // 3], commands[len(commands) // 3 :])
        return
    if "--in-context" in sys.argv[3:]:
        split = len(commands) // 3
        print_in_context(commands[:split], commands[split:], audiences="--audiences" in sys.argv[3:])
        return
    split = len(commands) // 3
    warm, timed = commands[:split], commands[split:]
    policy = stage_policy(Settings())
    audiences = policy.audiences
    bare_us, plain_us, _ = paired_step_us(
        warm, timed, StagePolicy(profile=policy.profile), StagePolicy(triggers=policy.triggers, profile=policy.profile)
    )
    untriggered_us, audience_us, warmed = paired_step_us(
        warm, timed, dataclasses.replace(policy, triggers=None), policy
    )
    inputs = refresh_inputs(timed, warmed, policy)

    def refresh_all(chunk: list[tuple[Profile, float]]) -> None:
        for profile, now in chunk:
            refresh_audiences(profile, now=now, policy=audiences)

    refresh_us = best_us(refresh_all, inputs)
    print(
        f"{len(timed)} timed events ({customers} customers, {days:g} days, {split} warm-up), "
        f"best of {REPEATS} per chunk of {CHUNK}, thread CPU"
    )
    print(f"  step_key, no audiences, no triggers {bare_us:6.1f} µs/event")
    print(f"  step_key, no audiences              {plain_us:6.1f} µs/event")
    print(f"  step_key, audiences, no triggers    {untriggered_us:6.1f} µs/event")
    print(f"  step_key, audiences                 {audience_us:6.1f} µs/event")
    print(f"  the trigger stage, no audiences     {plain_us - bare_us:6.1f} µs/event")
    print(f"  the trigger stage, audiences        {audience_us - untriggered_us:6.1f} µs/event")
    print(f"  refresh_audiences alone             {refresh_us:6.1f} µs/event")


if __name__ == "__main__":
    main()
