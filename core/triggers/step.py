"""``TriggerStep``: what ``core.triggers.engine.advance_triggers`` changed.

A module of its own so that the engine can be compiled with mypyc (scripts/build_compiled.sh) while this
msgspec Struct is not: mypyc builds a class from a compiled module without its class keywords (``frozen``),
which would silently change it.
"""

from __future__ import annotations

import msgspec

from schemas.profile import Profile
from schemas.triggers import Trigger


class TriggerStep(msgspec.Struct, frozen=True):
    """What ``advance_triggers`` changed: the profile, triggers to send, ``(kind, outcome)`` to count, wake-up."""

    profile: Profile
    triggers: tuple[Trigger, ...] = ()
    outcomes: tuple[tuple[str, str], ...] = ()
    due_at: float | None = None
