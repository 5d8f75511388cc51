"""Every ``step_key`` result of the 200-customer, 30-day workload (trigger_replay's), with and without the worker's
audiences: ``record FILE`` in one tree pickles each result's ``repr``; ``compare FILE`` in another counts those
that differ. Run from a tree's root: ``.venv/bin/python step_results.py record|compare FILE``."""

import pickle
import sys
from pathlib import Path

sys.path[:0] = [str(Path.cwd()), str(Path.cwd() / "bench")]
from step_bench import keyed_commands  # noqa: E402

from core.profile_stage import KeyState, StagePolicy, step_key  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.stage_config import stage_policy  # noqa: E402


def results() -> list[str]:
    worker = stage_policy(Settings())
    found = []
    for policy in (StagePolicy(triggers=worker.triggers, profile=worker.profile), worker):
        states: dict[str, KeyState] = {}
        for key, command, now in keyed_commands(200, 30.0):
            result = step_key(states.get(key) or KeyState(key=key), command, now=now, policy=policy)
            states[key] = result.state
            found.append(repr(result))
    return found


if __name__ == "__main__":
    action, path = sys.argv[1], Path(sys.argv[2])
    if action == "record":
        path.write_bytes(pickle.dumps(results()))
    else:
        expected = pickle.loads(path.read_bytes())
        now = results()
        print(f"{len(now)} step_key results, {sum(a != b for a, b in zip(expected, now, strict=True))} differ")
