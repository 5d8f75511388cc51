"""What the trigger guard chain's guardrails cost per event in the profile stage's pure step.

Run: ``.venv/bin/python bench/guards_bench.py [customers] [days]``. The workload of ``bench/step_bench.py``
(the generated one, which carries emails, phones, consent, time zones and messaging events), replayed
through ``step_key`` with the shipped trigger definitions and no audiences (segments and scores cost the
same either way and only add noise), once with ``NO_GUARDRAILS`` (no consent defaults, caps, quiet hours,
holdouts; no contact required) and once with the settings' guardrails (``Settings().guardrails`` plus a
10 % holdout of every kind, so the holdout guard hashes too); ``ROUNDS`` alternated rounds, each timed in
process CPU time (``time.process_time``: on a machine shared with other work, waiting for a core is not
counted), the minimum of each kept. The difference is the guardrails' cost per event. No wake-ups are
replayed: a due trigger is decided at its customer's next event, so decisions are more frequent per event
than in the worker (about 1 in 11 events here), a pessimistic mix for the guards. The outcome counts of
both runs show the chain at work.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_bench import keyed_commands

from core.profile_stage import KeyState, StagePolicy, step_key
from core.triggers import engine
from core.triggers.guardrails import NO_GUARDRAILS
from core.triggers.guards import CONTROL, GUARDS, SEND, Decision, run_guards
from streams.settings import Settings
from streams.stage_config import stage_policy

ROUNDS = 7


def with_guardrails(policy: StagePolicy, guardrails) -> StagePolicy:
    assert policy.triggers is not None
    return dataclasses.replace(policy, triggers=dataclasses.replace(policy.triggers, guardrails=guardrails))


def cpu_us(commands, policy: StagePolicy) -> float:
    """µs of process CPU time per event of replaying ``commands`` from empty state."""
    states: dict[str, KeyState] = {}
    started = time.process_time()
    for key, command, now in commands:
        states[key] = step_key(states.get(key) or KeyState(key=key), command, now=now, policy=policy).state
    return (time.process_time() - started) / len(commands) * 1e6


def chain_us_per_event(commands, policy: StagePolicy) -> tuple[float, int]:
    """The guard chain alone: every decision of a replay recorded, then re-run (best of ``ROUNDS`` in CPU
    time, channel choice included); its total per event of the replay, and the number of decisions."""
    recorded: list[Decision] = []

    def recording(decision: Decision, guards=GUARDS):
        recorded.append(decision)
        return run_guards(decision, guards)

    engine.run_guards = recording
    try:
        outcomes(commands, policy)
    finally:
        engine.run_guards = run_guards
    fields = [(d.profile, d.pending, d.definition, d.at, d.forgotten_at, d.guardrails, d.pass_sends) for d in recorded]
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for args in fields:
            decision = Decision(*args)
            if run_guards(decision).action in (SEND, CONTROL):
                _ = decision.channel  # the channel choice is part of the cost
        best = min(best, time.process_time() - started)
    return best / len(commands) * 1e6, len(recorded)


def outcomes(commands, policy: StagePolicy) -> Counter:
    states: dict[str, KeyState] = {}
    counted: Counter = Counter()
    for key, command, now in commands:
        result = step_key(states.get(key) or KeyState(key=key), command, now=now, policy=policy)
        states[key] = result.state
        counted.update(outcome for _, outcome in result.trigger_outcomes)
    return counted


def main() -> None:
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    days = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    commands = keyed_commands(customers, days)
    settings = Settings(trigger_holdout_shares="*:0.1")
    worker = stage_policy(settings)
    plain = StagePolicy(triggers=worker.triggers, profile=worker.profile)
    guarded = with_guardrails(plain, settings.guardrails)
    open_policy = with_guardrails(plain, NO_GUARDRAILS)
    runs: dict[str, list[float]] = {"no guardrails": [], "guardrails": []}
    for _ in range(ROUNDS):
        runs["no guardrails"].append(cpu_us(commands, open_policy))
        runs["guardrails"].append(cpu_us(commands, guarded))
    print(f"{len(commands)} events ({customers} customers, {days:g} days), {ROUNDS} alternated rounds, CPU time")
    for name, values in runs.items():
        print(
            f"  step_key, {name:<14} " + "  ".join(f"{v:6.1f}" for v in values) + f"  min {min(values):6.1f} µs/event"
        )
    cost_min = min(runs["guardrails"]) - min(runs["no guardrails"])
    cost_median = statistics.median(runs["guardrails"]) - statistics.median(runs["no guardrails"])
    print(f"  the guardrails' cost: {cost_min:+6.2f} µs/event (min - min), {cost_median:+6.2f} (median - median)")
    for name, policy in (("no guardrails", open_policy), ("guardrails", guarded)):
        alone, decisions = chain_us_per_event(commands, policy)
        print(f"  the guard chain alone, {name}: {alone:5.2f} µs/event ({decisions} decisions)")
    for name, policy in (("no guardrails", open_policy), ("guardrails", guarded)):
        counted = outcomes(commands, policy)
        print(f"  outcomes, {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counted.items())))


if __name__ == "__main__":
    main()
