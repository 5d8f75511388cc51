"""``core.profile.applied.AppliedIds``: the replay guard's set answers exactly as a scan of the tuple would."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from core.profile.applied import AppliedIds
from core.profile.bounded import capped_append


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([f"m{n}" for n in range(40)]), max_size=120),
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=6),
)
def test_contains_and_appended_agree_with_the_tuple(ids, cap, max_entries):
    """Any sequence of appends (repeats included) from any start, a few sets kept: same tuples, same answers."""
    memo = AppliedIds(max_entries=max_entries, min_length=2)
    start = tuple(ids[:10])  # may hold duplicates, as a decoded record might
    current, plain = start, start
    for item in ids[10:]:
        assert memo.contains(current, item) == (item in plain)
        current = memo.appended(current, item, cap)
        plain = capped_append(plain, item, cap)
        assert current == plain
        for probe in ("m0", "m7", "m39", "absent"):
            assert memo.contains(current, probe) == (probe in plain)
    assert len(memo) <= max_entries


def test_an_old_tuple_whose_set_moved_on_is_answered_from_its_own_ids():
    memo = AppliedIds(min_length=2)
    old = tuple(f"m{n}" for n in range(20))
    assert memo.contains(old, "m3")
    new = memo.appended(old, "m20", cap=20)  # "m0" dropped at the cap
    assert not memo.contains(new, "m0") and memo.contains(new, "m20")
    assert memo.contains(old, "m0") and not memo.contains(old, "m20")  # a branch from the old profile


def test_a_duplicate_in_the_tuple_is_never_forgotten():
    memo = AppliedIds(min_length=2)
    ids = ("m1", *(f"x{n}" for n in range(10)), "m1")
    assert memo.contains(ids, "m1")
    current = ids
    for n in range(11):  # drops the first "m1" and every "x", keeps the second "m1"
        current = memo.appended(current, f"y{n}", cap=12)
    assert current[0] == "m1"
    assert memo.contains(current, "m1")
    current = memo.appended(current, "y11", cap=12)  # now the second one goes too
    assert "m1" not in current
    assert not memo.contains(current, "m1")


def test_long_random_chains_under_eviction():
    rng = random.Random(3)
    memo = AppliedIds(max_entries=2, min_length=2)
    chains = [tuple(f"c{c}-{n}" for n in range(30)) for c in range(5)]
    plain = list(chains)
    for step in range(2000):
        c = rng.randrange(5)
        item = f"c{c}-{rng.randrange(3000)}"
        assert memo.contains(chains[c], item) == (item in plain[c])
        chains[c] = memo.appended(chains[c], item, 30)
        plain[c] = capped_append(plain[c], item, 30)
        assert chains[c] == plain[c], step
