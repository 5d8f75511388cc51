"""The one place a due trigger passes before it reaches the outbox: an ordered chain of guards.

Every outcome a trigger can have is declared once in ``OUTCOMES`` (name, action, meaning): the metric
``streamcdp_trigger_decisions_total{kind, outcome}`` takes its label values from it and
``streamcdp triggers outcomes`` prints it for the README. A guard is a name and ``check(decision)``,
which answers an outcome (the trigger stops there) or None (next guard). ``GUARDS`` is the chain; a new
guard is one class added to it, its outcomes added to ``OUTCOMES``. What the guards decide by (caps,
quiet hours, consent defaults, holdouts) is ``core.triggers.guardrails.Guardrails``.

Actions: ``send`` (publish on ``triggers.<channel>``), ``control`` (the holdout arm: publish on
``triggers.holdout`` only; it counts as a send for caps and re-entry, so both arms meet the same rules),
``drop`` (forget the pending trigger, remember the outcome), ``hold`` (keep it pending: it may still be
sent, e.g. once the anonymous visitor logs in), ``defer`` (keep it pending with a later due time).

The order, and why: the final, cheap, customer-wide facts first (forgotten, already sent, stale, nobody to
send to, suppressed); then the channels (consent, contact); then time (quiet hours defer before any cap
is spent, so the caps are counted when the message really goes out); then the caps, where the triggers due
together compete by priority (the engine decides them highest first); then the content, built only for a
message that may go out (a message that asked for items or recommendations and found none is not sent);
last the holdout, so the control arm is drawn from exactly the messages that would have been sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.triggers.caps import channel_cap_reached, customer_cap_reached
from core.triggers.channels import choose_channel
from core.triggers.contact import on_suppression_list, open_channels, reachable
from core.triggers.definitions import TriggerDefinition
from core.triggers.guardrails import NO_GUARDRAILS, Guardrails
from core.triggers.holdout import in_holdout
from core.triggers.payload import MessageContent, asks_for_content, message_content
from core.triggers.quiet_hours import customer_zone, quiet_until
from schemas.profile import Profile
from schemas.triggers import PendingTrigger, TriggerSend

SEND = "send"
CONTROL = "control"
DROP = "drop"
HOLD = "hold"
DEFER = "defer"


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
BLOCKED_SUPPRESSED = Outcome(
    "blocked_suppressed",
    DROP,
    "on the retailer's suppression list (trait `suppressed`), or every allowed channel hard-bounced, "
    "complained of spam or unsubscribed",
)
BLOCKED_CONSENT = Outcome(
    "blocked_consent", DROP, "no allowed channel has consent (withdrawn, or an opt-in channel never granted)"
)
BLOCKED_NO_CONTACT = Outcome(
    "blocked_no_contact",
    DROP,
    "no consented channel can reach the customer (email hash, phone hash, push token, web push subscription)",
)
CANCELLED_CONSENT = Outcome(
    "cancelled_consent", DROP, "while it waited, consent was withdrawn (or suppressed) on every allowed channel"
)
DEFERRED_QUIET_HOURS = Outcome(
    "deferred_quiet_hours", DEFER, "due inside quiet hours local time: kept, due again when they end (exits apply)"
)
CAPPED = Outcome(
    "capped", DROP, "a frequency cap (customer, kind, or every allowed channel) is reached in its rolling window"
)
OUTRANKED = Outcome(
    "outranked", DROP, "due together with a higher-priority trigger that took the last message the caps allow"
)
BLOCKED_NO_CONTENT = Outcome(
    "blocked_no_content",
    DROP,
    "the message would be empty: it asks for items or recommendations, found none, and carries no offer",
)
HOLDOUT = Outcome(
    "holdout", CONTROL, "the customer is in the kind's holdout (or the control group): published on triggers.holdout"
)

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
    BLOCKED_SUPPRESSED,
    BLOCKED_CONSENT,
    BLOCKED_NO_CONTACT,
    CANCELLED_CONSENT,
    DEFERRED_QUIET_HOURS,
    CAPPED,
    OUTRANKED,
    BLOCKED_NO_CONTENT,
    HOLDOUT,
)


_UNKNOWN: Any = object()  # a channel fact not computed yet (None is an answer of ``quiet_until``)


class Decision:
    """A due trigger about to be decided: the customer, the pending trigger, its definition, the time.

    ``guardrails``: what the guards decide by; ``pass_sends``: what the triggers decided before this one in
    the same pass (higher priority) sent. The channel facts are computed once, when a guard first asks.

    Read-only by convention, a plain slots class rather than a frozen dataclass with
    ``functools.cached_property``: one is built for every due trigger, and that property takes a lock and
    writes the instance dict on each first read (five facts per decision).
    """

    __slots__ = (
        "profile",
        "pending",
        "definition",
        "at",
        "forgotten_at",
        "guardrails",
        "pass_sends",
        "_open_channels",
        "_reachable_channels",
        "_channel",
        "_quiet_until",
        "_content",
    )

    def __init__(  # noqa: PLR0917 - positional, as the dataclass it replaced was built
        self,
        profile: Profile,
        pending: PendingTrigger,
        definition: TriggerDefinition,
        at: float,
        forgotten_at: float | None = None,
        guardrails: Guardrails = NO_GUARDRAILS,
        pass_sends: tuple[TriggerSend, ...] = (),
    ) -> None:
        self.profile = profile
        self.pending = pending
        self.definition = definition
        self.at = at
        self.forgotten_at = forgotten_at
        self.guardrails = guardrails
        self.pass_sends = pass_sends
        self._open_channels: tuple[str, ...] | None = None
        self._reachable_channels: tuple[str, ...] | None = None
        self._channel: tuple[str, str] | None = None
        self._quiet_until: Any = _UNKNOWN
        self._content: MessageContent | None = None

    @property
    def open_channels(self) -> tuple[str, ...]:
        """The definition's channels neither suppressed nor without consent."""
        found = self._open_channels
        if found is None:
            found = self._open_channels = open_channels(self.profile, self.definition.channels, self.guardrails)
        return found

    @property
    def reachable_channels(self) -> tuple[str, ...]:
        found = self._reachable_channels
        if found is None:
            found = self.open_channels
            if self.guardrails.require_contact:
                profile = self.profile
                found = tuple(c for c in found if reachable(profile, c))
            self._reachable_channels = found
        return found

    @property
    def sends(self) -> tuple[TriggerSend, ...]:
        earlier = self.profile.trigger_sends
        return (*earlier, *self.pass_sends) if self.pass_sends else earlier

    @property
    def channel(self) -> tuple[str, str]:
        """``(channel, reason)``: the chosen one of the reachable channels within their caps (``("", "")``: none)."""
        found = self._channel
        if found is None:
            found = self._channel = self._choose_channel()
        return found

    def _choose_channel(self) -> tuple[str, str]:
        sends, at, guardrails = self.sends, self.at, self.guardrails
        candidates = tuple(c for c in self.reachable_channels if not channel_cap_reached(sends, c, at, guardrails))
        if not candidates:
            return "", ""
        profile = self.profile
        return choose_channel(candidates, profile.engagement, profile.preferred_channel, guardrails)

    @property
    def quiet_until(self) -> float | None:
        """When the quiet hours around ``at`` end in the customer's zone (None: not quiet now)."""
        found = self._quiet_until
        if found is _UNKNOWN:
            quiet, guardrails = self.guardrails.quiet_hours, self.guardrails
            if quiet is not None:
                found = quiet_until(self.at, customer_zone(self.profile.timezone, guardrails), quiet)
            else:
                found = None
            self._quiet_until = found
        return found

    @property
    def content(self) -> MessageContent:
        """The message's items and recommendations (``message_content``), built once for the guard and payload."""
        found = self._content
        if found is None:
            found = self._content = message_content(self.profile, self.pending, self.definition, at=self.at)
        return found


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


@dataclass(frozen=True)
class SuppressedGuard:
    name: str = "suppressed"

    def check(self, decision: Decision) -> Outcome | None:
        profile = decision.profile
        if on_suppression_list(profile):
            return BLOCKED_SUPPRESSED
        suppressed = profile.suppressed
        if suppressed and all(c in suppressed for c in decision.definition.channels):
            return BLOCKED_SUPPRESSED
        return None


@dataclass(frozen=True)
class ConsentGuard:
    name: str = "consent"

    def check(self, decision: Decision) -> Outcome | None:
        return None if decision.open_channels else BLOCKED_CONSENT


@dataclass(frozen=True)
class ContactGuard:
    name: str = "contactable"

    def check(self, decision: Decision) -> Outcome | None:
        return None if decision.reachable_channels else BLOCKED_NO_CONTACT


@dataclass(frozen=True)
class QuietHoursGuard:
    name: str = "quiet_hours"

    def check(self, decision: Decision) -> Outcome | None:
        return None if decision.quiet_until is None else DEFERRED_QUIET_HOURS


@dataclass(frozen=True)
class CapsGuard:
    """Customer, kind and channel caps; a cap reached only through this pass's sends is ``outranked``."""

    name: str = "caps"

    def check(self, decision: Decision) -> Outcome | None:
        if not decision.sends:
            return None
        kind, at, guardrails = decision.definition.name, decision.at, decision.guardrails
        caps = decision.definition.caps
        capped = customer_cap_reached(decision.sends, kind, at, guardrails, caps) is not None
        if not capped and decision.channel[0]:
            return None
        if not decision.pass_sends:
            return CAPPED
        earlier = decision.profile.trigger_sends
        before_pass = customer_cap_reached(earlier, kind, at, guardrails, caps) is not None or not any(
            not channel_cap_reached(earlier, c, at, guardrails) for c in decision.reachable_channels
        )
        return CAPPED if before_pass else OUTRANKED


@dataclass(frozen=True)
class ContentGuard:
    """A message that would say nothing is not sent: a cross-sell with nothing left to recommend."""

    name: str = "content"

    def check(self, decision: Decision) -> Outcome | None:
        if not asks_for_content(decision.definition):
            return None
        items, recommendations = decision.content
        return None if items or recommendations else BLOCKED_NO_CONTENT


@dataclass(frozen=True)
class HoldoutGuard:
    name: str = "holdout"

    def check(self, decision: Decision) -> Outcome | None:
        definition = decision.definition
        if in_holdout(decision.profile.customer_id, definition.name, decision.guardrails, definition.holdout):
            return HOLDOUT
        return None


GUARDS: tuple[Guard, ...] = (
    ForgottenGuard(),
    DuplicateGuard(),
    StaleGuard(),
    KnownCustomerGuard(),
    SuppressedGuard(),
    ConsentGuard(),
    ContactGuard(),
    QuietHoursGuard(),
    CapsGuard(),
    ContentGuard(),
    HoldoutGuard(),
)


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
