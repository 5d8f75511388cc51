"""The one place a due trigger passes before it reaches the outbox: an ordered chain of guards.

Every outcome a trigger can have is declared once in ``OUTCOMES`` (name, action, meaning): the metric
``streamcdp_trigger_decisions_total{kind, outcome}`` takes its label values from it and
``streamcdp triggers outcomes`` prints it for the README. A guard is a name and ``check(decision)``,
which answers an outcome (the trigger stops there) or None (next guard). ``GUARDS`` is the chain; the
guardrails issue (consent, caps, quiet hours, channel choice, holdouts) adds guards to it and outcomes to
``OUTCOMES``, nothing else.

Actions: ``send`` (publish), ``drop`` (forget the pending trigger, remember the outcome), ``hold`` (keep it
pending: it may still be sent, e.g. once the anonymous visitor logs in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.triggers.definitions import TriggerDefinition
from schemas.profile import Profile
from schemas.triggers import PendingTrigger

SEND = "send"
DROP = "drop"
HOLD = "hold"


@dataclass(frozen=True)
class Outcome:
    name: str
    action: str
    meaning: str


SENT = Outcome("sent", SEND, "passed every guard: published on triggers.<channel>")
BLOCKED_FORGOTTEN = Outcome("blocked_forgotten", DROP, "the customer asked to be forgotten after it was entered")
DUPLICATE = Outcome("duplicate", DROP, "a trigger with this trigger_id was sent already")
EXPIRED_STALE = Outcome("expired_stale", DROP, "due longer ago than the definition's `expires` (a replay, a backlog)")
EXPIRED_ANONYMOUS = Outcome("expired_anonymous", DROP, "expired while the visitor was still anonymous")
HELD_ANONYMOUS = Outcome("held_anonymous", HOLD, "due, but nobody to send it to yet: waits for a login")
CANCELLED_EXIT = Outcome("cancelled_exit", DROP, "an exit event or exit rule cancelled it while it waited")
CANCELLED_FACTS = Outcome("cancelled_facts", DROP, "what it was about is gone (bought meanwhile, added to cart)")
SUPERSEDED = Outcome("superseded", DROP, "a new entry of the same kind replaced it (a newer purchase, product)")
WITHDRAWN = Outcome("withdrawn", DROP, "its kind is no longer defined (definitions changed)")

OUTCOMES: tuple[Outcome, ...] = (
    SENT,
    BLOCKED_FORGOTTEN,
    DUPLICATE,
    EXPIRED_STALE,
    EXPIRED_ANONYMOUS,
    HELD_ANONYMOUS,
    CANCELLED_EXIT,
    CANCELLED_FACTS,
    SUPERSEDED,
    WITHDRAWN,
)


@dataclass(frozen=True)
class Decision:
    """A due trigger about to be decided: the customer, the pending trigger, its definition, the time."""

    profile: Profile
    pending: PendingTrigger
    definition: TriggerDefinition
    at: float
    forgotten_at: float | None = None


class Guard(Protocol):
    @property
    def name(self) -> str:
        """The kind (a metric label, a guard's name in docs)."""

    def check(self, decision: Decision) -> Outcome | None:
        """An outcome that stops the trigger here, or None to pass it on."""


def is_known(profile: Profile) -> bool:
    """A customer a sender can reach: a user id (the sender's address book key) or a hashed contact."""
    return profile.user_id is not None or profile.email_hash is not None or profile.phone_hash is not None


@dataclass(frozen=True)
class ForgottenGuard:
    name: str = "forgotten"

    def check(self, decision: Decision) -> Outcome | None:
        forgotten_at = decision.forgotten_at
        if forgotten_at is not None and decision.pending.entered_at <= forgotten_at:
            return BLOCKED_FORGOTTEN
        return None


@dataclass(frozen=True)
class DuplicateGuard:
    name: str = "duplicate"

    def check(self, decision: Decision) -> Outcome | None:
        return DUPLICATE if decision.pending.trigger_id in decision.profile.triggers_sent else None


@dataclass(frozen=True)
class StaleGuard:
    name: str = "stale"

    def check(self, decision: Decision) -> Outcome | None:
        if decision.at <= decision.pending.due_at + decision.definition.wait.expires:
            return None
        return EXPIRED_STALE if is_known(decision.profile) else EXPIRED_ANONYMOUS


@dataclass(frozen=True)
class KnownCustomerGuard:
    name: str = "known_customer"

    def check(self, decision: Decision) -> Outcome | None:
        return None if is_known(decision.profile) else HELD_ANONYMOUS


GUARDS: tuple[Guard, ...] = (ForgottenGuard(), DuplicateGuard(), StaleGuard(), KnownCustomerGuard())


def run_guards(decision: Decision, guards: Sequence[Guard] = GUARDS) -> Outcome:
    """The first guard's outcome, or ``SENT`` when every guard lets the trigger pass."""
    for guard in guards:
        outcome = guard.check(decision)
        if outcome is not None:
            return outcome
    return SENT


def describe_outcomes() -> str:
    """The outcome table (markdown) for the README, from ``OUTCOMES``."""
    rows = [f"| `{o.name}` | {o.action} | {o.meaning} |" for o in OUTCOMES]
    return "\n".join(["| outcome | action | meaning |", "|---|---|---|", *rows])
