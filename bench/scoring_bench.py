"""Cost per profile of scoring and of segment evaluation, in microseconds (``python bench/scoring_bench.py``).

Profiles come from replaying a small generated workload through ``core.profile.apply.apply_event``, so they
have realistic carts, affinities, order histories and event counts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.profile.apply import apply_event
from core.rules.definitions import load_definitions
from core.scoring import compute_features, load_models, score_profile
from core.segment_eval import evaluate_segments, next_time_change
from core.segment_fields import profile_view
from offline.generator import WorkloadConfig, generate_workload
from offline.training import ReplayStats, customer_of, decode_lines, identity_map
from schemas.profile import Profile


def replayed_profiles(customers: int = 200, days: float = 60.0) -> tuple[list[Profile], float]:
    workload = generate_workload(WorkloadConfig(start=1_690_000_000.0, customers=customers, days=days, seed=9))
    events = decode_lines(workload.lines, ReplayStats())
    links = identity_map(events)
    profiles: dict[str, Profile] = {}
    for event in events:
        key = customer_of(event, links)
        profiles[key] = apply_event(profiles.get(key) or Profile(customer_id=key), event, now=event.timestamp)
    return list(profiles.values()), events[-1].timestamp


def per_profile_us(function, profiles: list, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        for profile in profiles:
            function(profile)
    return (time.perf_counter() - started) / (repeat * len(profiles)) * 1e6


def main() -> None:
    profiles, now = replayed_profiles()
    models = load_models()
    definitions = load_definitions()
    views = [profile_view(profile, now=now) for profile in profiles]
    rows = [
        ("features only (compute_features)", lambda p: compute_features(p, now=now), profiles, 20),
        ("score_profile, 2 models + affinity shares", lambda p: score_profile(models, p, now=now), profiles, 20),
        (
            "score_profile, 2 models, no affinity",
            lambda p: score_profile(models, p, now=now, with_affinity=False),
            profiles,
            20,
        ),
        ("profile_view (JSON round trip + traits)", lambda p: profile_view(p, now=now), profiles, 5),
        (
            "evaluate_segments on a ready view (21 rules)",
            lambda v: evaluate_segments(definitions, v, now=now),
            views,
            5,
        ),
        (
            "evaluate_segments from the Profile record",
            lambda p: evaluate_segments(definitions, p, now=now),
            profiles,
            5,
        ),
        ("next_time_change from the Profile record", lambda p: next_time_change(definitions, p, now=now), profiles, 2),
    ]
    print(f"{len(profiles)} replayed profiles, Python {sys.version.split()[0]}")
    for label, function, inputs, repeat in rows:
        print(f"  {label:<48} {per_profile_us(function, inputs, repeat):8.1f} µs/profile")


if __name__ == "__main__":
    main()
