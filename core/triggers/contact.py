"""Whether a customer may be messaged on a channel: the suppression list, suppressions, consent, contact.

Read by the guard chain (``core.triggers.guards``) and written by ``core.profile.apply`` (the events named
in ``schemas/CONTRACT.md``, section *Suppression, consent and contact*):

- the retailer's suppression list: the identify trait ``suppressed`` (``true`` adds the customer, ``false``
  removes them; last write wins by event time, like every trait);
- per channel (``Profile.suppressed``): a hard bounce (``Message Bounced`` with ``bounce_type`` ``hard``),
  a spam complaint (``Unsubscribed`` with ``reason`` ``spam``), an ``Unsubscribed``; a newer
  ``Consent Updated`` granting the channel lifts an unsubscribe, a new email or phone lifts a hard bounce;
- consent (``Profile.consent``): an explicit grant or withdrawal wins; without one, the channel's default
  policy (``Guardrails.consent``: ``opt_out`` allowed, ``opt_in`` not);
- contact: email needs ``email_hash``, sms and whatsapp ``phone_hash``, apppush a push token
  (``context.device.token``), webpush a subscription (``Push Subscribed``).

``core.triggers.pending`` merges these fields across a merge of two profiles.
"""

from __future__ import annotations

from typing import Any

from core.triggers.guardrails import OPT_OUT, Guardrails

SUPPRESSION_TRAIT = "suppressed"
HARD_BOUNCE = "hard_bounce"
SPAM_COMPLAINT = "spam_complaint"
UNSUBSCRIBED = "unsubscribed"
HARD_BOUNCE_TYPES = frozenset({"hard", "permanent"})
SPAM_REASONS = frozenset({"spam", "spam_complaint", "complaint", "abuse"})
# Events that may take a channel away: a pending trigger with no channel left is cancelled at once.
WITHDRAWING_EVENTS = frozenset({"Consent Updated", "Unsubscribed", "Message Bounced"})
WEBPUSH_EVENTS = {"Push Subscribed": True, "Push Unsubscribed": False}


def on_suppression_list(profile: Any) -> bool:
    return profile.custom_traits.get(SUPPRESSION_TRAIT) is True


def consented(profile: Any, channel: str, guardrails: Guardrails) -> bool:
    """An explicit grant or withdrawal, else the channel's default policy."""
    granted = profile.consent.get(channel)
    if granted is not None:
        return granted
    return guardrails.consent.get(channel) == OPT_OUT


def reachable(profile: Any, channel: str) -> bool:
    """Whether the profile holds what ``channel`` needs to reach the customer."""
    if channel == "email":
        return profile.email_hash is not None
    if channel in ("sms", "whatsapp"):
        return profile.phone_hash is not None
    if channel == "apppush":
        return profile.push_token_hash is not None
    if channel == "webpush":
        return profile.webpush_subscribed
    return False


def open_channels(profile: Any, channels: tuple[str, ...], guardrails: Guardrails) -> tuple[str, ...]:
    """Of ``channels``, those neither suppressed nor without consent (contact aside: it may still come)."""
    suppressed = profile.suppressed
    return tuple(c for c in channels if c not in suppressed and consented(profile, c, guardrails))
