"""``KeyState`` and ``StepResult``: what the profile stage (``core.profile_stage``) holds per key and returns.

A module of its own so that ``core.profile_stage`` can be compiled with mypyc (scripts/build_compiled.sh)
while these msgspec Structs are not: mypyc builds a class from a compiled module without its class keywords
(``frozen``, ``kw_only``), which would silently change them.
"""

from __future__ import annotations

import msgspec

from core.key_identity import NO_IDENTITY, KeyIdentity
from schemas.commands import ProfileCommand
from schemas.conversions import TriggerConversion
from schemas.profile import Profile
from schemas.segments import AudienceChange
from schemas.triggers import Trigger


class KeyState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the profile stage holds for one key of ``profile-commands``."""

    key: str
    profile: Profile | None = None
    identity: KeyIdentity = NO_IDENTITY

    @property
    def redirect_to(self) -> str | None:
        return self.identity.redirect_to

    @property
    def forgotten_at(self) -> float | None:
        return self.identity.forgotten_at


class StepResult(msgspec.Struct, frozen=True):
    """What one command changes and what the agent must send.

    ``state``: the key's new state; ``profile_changed`` / ``identity_changed``: which parts to write.
    ``due_at``: when the key must next be woken: a pending trigger or an audience refresh (None: never).
    ``trigger_outcomes``: ``(kind, outcome)`` of every trigger decided, cancelled or expired (metrics).
    ``forwards``: ``(key, command)`` pairs for ``profile-commands``. ``notes``: counters to increment.
    ``audience_changes``: segment entries / exits and score crossings for ``segments.changes``.

    A msgspec struct, not a dataclass: it is built once or twice per event, and a frozen dataclass takes
    about 2 µs to build (or to ``replace``), a struct 0.1 µs.
    """

    state: KeyState
    due_at: float | None
    triggers: tuple[Trigger, ...] = ()
    forwards: tuple[tuple[str, ProfileCommand], ...] = ()
    notes: tuple[str, ...] = ()
    profile_changed: bool = False
    identity_changed: bool = False
    audience_changes: tuple[AudienceChange, ...] = ()  # for segments.changes
    trigger_outcomes: tuple[tuple[str, str], ...] = ()
    conversions: tuple[TriggerConversion, ...] = ()  # for trigger-conversions and the per-kind counters

    @property
    def profile(self) -> Profile | None:
        return self.state.profile

    @property
    def changed(self) -> bool:
        return self.profile_changed or self.identity_changed
