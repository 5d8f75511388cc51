"""``Tally.add_each`` counts exactly what ``add`` would, value by value."""

from __future__ import annotations

from agents.tally import PROFILE_COMMANDS, PROFILE_OUTCOMES, Tally


def test_add_each_is_add_for_every_value_summed_with_the_plain_adds():
    each, plain = Tally(), Tally()
    for values in [("applied",), ("applied",), ("duplicate", "linked"), (), ("applied", "applied")]:
        each.add_each(PROFILE_OUTCOMES, values)
        for value in values:
            plain.add(PROFILE_OUTCOMES, value)
    each.add(PROFILE_OUTCOMES, "applied", amount=2)
    plain.add(PROFILE_OUTCOMES, "applied", amount=2)
    each.add_each(PROFILE_COMMANDS, ("event",))
    plain.add(PROFILE_COMMANDS, "event")
    counts, _ = each.take()
    assert counts == plain.take()[0]
    assert counts[(PROFILE_OUTCOMES, ("applied",))] == 6


def test_take_starts_add_each_again_from_zero():
    tally = Tally()
    tally.add_each(PROFILE_OUTCOMES, ("applied",))
    tally.take()
    assert tally.take() == ({}, {"event_lag_seconds": []})
    tally.add_each(PROFILE_OUTCOMES, ())
    assert tally.take()[0] == {}
