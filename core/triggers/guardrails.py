"""What the guard chain decides by: caps, quiet hours, time zone, consent defaults, holdouts, channel choice.

One frozen ``Guardrails`` value, built from the ``STREAMCDP_TRIGGER_*`` settings (``from_texts``) and
overridden by the trigger file's ``guardrails:`` section (same names, same formats); a definition may set
its own ``cap`` and ``holdout``. The text formats, shared by the settings and the file:

- caps: ``MAX/WINDOW[,MAX/WINDOW]``, e.g. ``2/1d,5/7d`` (rolling windows; durations as in rules);
- channel caps: ``CHANNEL:MAX/WINDOW[,...]``, e.g. ``sms:1/1d,whatsapp:1/1d``;
- quiet hours: ``HH:MM-HH:MM`` local time (may wrap midnight), empty for none;
- consent: ``CHANNEL:POLICY[,...]`` with POLICY ``opt_out`` (allowed unless withdrawn) or ``opt_in``
  (only after an explicit ``Consent Updated`` granting it);
- holdout shares: ``KIND:SHARE[,...]`` in [0, 1], ``*`` for every kind without its own.

``NO_GUARDRAILS`` (no caps, quiet hours, holdouts; every channel opt-out; no contact required) is the
engine's default, for tests of trigger kinds; the worker always runs with the settings' guardrails.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.rules.tokens import RuleError, parse_window
from core.triggers.pending import MAX_TRIGGER_SENDS
from schemas.catalog import CHANNELS
from schemas.errors import ConfigError

OPT_IN = "opt_in"
OPT_OUT = "opt_out"
CONSENT_POLICIES = (OPT_OUT, OPT_IN)

# The defaults of the settings (streams.settings.Settings takes them from here: one declaration).
DEFAULT_CUSTOMER_CAPS = "2/1d,5/7d"
DEFAULT_KIND_CAPS = "1/1d"
DEFAULT_CHANNEL_CAPS = "sms:1/1d,whatsapp:1/1d"
DEFAULT_QUIET_HOURS = "21:00-08:00"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_CONSENT = "email:opt_out,sms:opt_in,whatsapp:opt_in,webpush:opt_in,apppush:opt_in"
DEFAULT_HOLDOUT_SHARES = ""
DEFAULT_CONTROL_GROUP_SHARE = 0.0
DEFAULT_ENGAGEMENT_PRIOR = "1,9"  # Beta(1, 9): an unmeasured channel counts as 10 % engaged, worth 10 sends

FILE_KEYS = frozenset(
    {
        "customer_caps",
        "kind_caps",
        "channel_caps",
        "quiet_hours",
        "default_timezone",
        "consent",
        "holdout_shares",
        "control_group_share",
        "engagement_prior",
    }
)
_QUIET_RE = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]):([0-5]\d)\s*$")


@dataclass(frozen=True)
class Cap:
    """At most ``limit`` messages in any rolling ``window`` seconds."""

    limit: int
    window: float

    def describe(self) -> str:
        return f"{self.limit}/{self.window:g}s"


@dataclass(frozen=True)
class QuietHours:
    """Local minutes of the day ``[start, end)`` in which nothing is sent (``start > end`` wraps midnight)."""

    start: int
    end: int

    def contains(self, minute: int) -> bool:
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


@dataclass(frozen=True)
class Guardrails:
    """Every knob of the guard chain (see the module docstring for the formats)."""

    customer_caps: tuple[Cap, ...] = ()
    kind_caps: tuple[Cap, ...] = ()
    channel_caps: Mapping[str, tuple[Cap, ...]] = field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    default_timezone: str = DEFAULT_TIMEZONE
    consent: Mapping[str, str] = field(default_factory=lambda: dict.fromkeys(CHANNELS, OPT_OUT))
    holdout_shares: Mapping[str, float] = field(default_factory=dict)
    control_group_share: float = 0.0
    engagement_prior: tuple[float, float] = (1.0, 9.0)
    require_contact: bool = True

    @cached_property
    def default_zone(self) -> ZoneInfo:
        return ZoneInfo(self.default_timezone)

    @cached_property
    def longest_window(self) -> float:
        """How long a send must be remembered for the caps (0: no caps)."""
        caps = (*self.customer_caps, *self.kind_caps, *(c for caps in self.channel_caps.values() for c in caps))
        return max((cap.window for cap in caps), default=0.0)

    def holdout_share(self, kind: str) -> float:
        return self.holdout_shares.get(kind, self.holdout_shares.get("*", 0.0))

    @classmethod
    def from_texts(cls, texts: Mapping[str, str | float], *, base: Guardrails | None = None) -> Guardrails:
        """``base`` (default: the settings' defaults) with the fields named in ``texts`` parsed and replaced.

        Raises ``ConfigError`` naming the field and the problem.
        """
        start = base if base is not None else DEFAULT_GUARDRAILS
        values: dict = {}
        for name, text in texts.items():
            if name not in FILE_KEYS:
                message = f"unknown guardrail {name!r} (known: {', '.join(sorted(FILE_KEYS))})"
                raise ConfigError(message)
            try:
                values[name] = _PARSERS[name](str(text))
            except ValueError as exc:
                message = f"guardrail {name}: {exc}"
                raise ConfigError(message) from None
        return _replace(start, values)


def _replace(base: Guardrails, values: dict) -> Guardrails:
    fields = {name: getattr(base, name) for name in Guardrails.__dataclass_fields__}
    return Guardrails(**{**fields, **values})


def parse_caps(text: str) -> tuple[Cap, ...]:
    """``"2/1d,5/7d"`` → caps; empty → none."""
    caps = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        limit, _, window = part.partition("/")
        try:
            cap = Cap(int(limit), parse_window(window))
        except (ValueError, RuleError):
            message = f"bad cap {part[:40]!r}: use MAX/WINDOW, e.g. 2/1d"
            raise ValueError(message) from None
        if not 0 <= cap.limit < MAX_TRIGGER_SENDS or cap.window <= 0:
            message = f"bad cap {part[:40]!r}: the maximum must be in [0, {MAX_TRIGGER_SENDS}) and the window positive"
            raise ValueError(message)
        caps.append(cap)
    return tuple(caps)


def _channel_pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        channel, sep, value = part.partition(":")
        channel = channel.strip()
        if not sep or (channel not in CHANNELS and channel != "*"):
            message = f"bad {what} {part[:40]!r}: use CHANNEL:VALUE with a channel of {', '.join(sorted(CHANNELS))}"
            raise ValueError(message)
        pairs.append((channel, value.strip()))
    return pairs


def parse_channel_caps(text: str) -> dict[str, tuple[Cap, ...]]:
    """``"sms:1/1d,whatsapp:1/1d"`` → channel → caps."""
    caps: dict[str, tuple[Cap, ...]] = {}
    for channel, value in _channel_pairs(text, "channel cap"):
        caps[channel] = (*caps.get(channel, ()), *parse_caps(value))
    return caps


def parse_quiet_hours(text: str) -> QuietHours | None:
    """``"21:00-08:00"`` → quiet hours; empty → none."""
    if not text.strip():
        return None
    match = _QUIET_RE.match(text)
    if match is None:
        message = f"bad quiet hours {text[:40]!r}: use HH:MM-HH:MM, e.g. 21:00-08:00"
        raise ValueError(message)
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start == end:
        message = f"bad quiet hours {text!r}: start and end are the same minute"
        raise ValueError(message)
    return QuietHours(start, end)


def parse_timezone(text: str) -> str:
    try:
        ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        message = f"unknown time zone {text[:60]!r} (an IANA name, e.g. Europe/Berlin)"
        raise ValueError(message) from None
    return text.strip()


def parse_consent(text: str) -> dict[str, str]:
    """``"email:opt_out,sms:opt_in"`` → channel → policy; channels not named are ``opt_in``."""
    policies = dict.fromkeys(CHANNELS, OPT_IN)
    for channel, policy in _channel_pairs(text, "consent policy"):
        if policy not in CONSENT_POLICIES:
            message = f"bad consent policy {policy[:20]!r} for {channel}: use {' or '.join(CONSENT_POLICIES)}"
            raise ValueError(message)
        for name in CHANNELS if channel == "*" else (channel,):
            policies[name] = policy
    return policies


def parse_share(text: str) -> float:
    share = float(text)
    if not 0.0 <= share <= 1.0:
        message = f"a share must be in [0, 1], got {text[:20]!r}"
        raise ValueError(message)
    return share


def parse_holdout_shares(text: str) -> dict[str, float]:
    """``"*:0.05,win_back:0.2"`` → kind → share."""
    shares = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, share = part.partition(":")
        if not sep or not kind.strip():
            message = f"bad holdout share {part[:40]!r}: use KIND:SHARE (or *:SHARE)"
            raise ValueError(message)
        shares[kind.strip()] = parse_share(share)
    return shares


def parse_prior(text: str) -> tuple[float, float]:
    """``"1,4"`` → (α, β) of the engagement prior, both positive."""
    alpha, _, beta = text.partition(",")
    prior = (float(alpha), float(beta))
    if min(prior) <= 0:
        message = f"the engagement prior needs two positive numbers ALPHA,BETA, got {text[:20]!r}"
        raise ValueError(message)
    return prior


_PARSERS = {
    "customer_caps": parse_caps,
    "kind_caps": parse_caps,
    "channel_caps": parse_channel_caps,
    "quiet_hours": parse_quiet_hours,
    "default_timezone": parse_timezone,
    "consent": parse_consent,
    "holdout_shares": parse_holdout_shares,
    "control_group_share": parse_share,
    "engagement_prior": parse_prior,
}

DEFAULT_GUARDRAILS = Guardrails(
    customer_caps=parse_caps(DEFAULT_CUSTOMER_CAPS),
    kind_caps=parse_caps(DEFAULT_KIND_CAPS),
    channel_caps=parse_channel_caps(DEFAULT_CHANNEL_CAPS),
    quiet_hours=parse_quiet_hours(DEFAULT_QUIET_HOURS),
    consent=parse_consent(DEFAULT_CONSENT),
    holdout_shares=parse_holdout_shares(DEFAULT_HOLDOUT_SHARES),
    control_group_share=DEFAULT_CONTROL_GROUP_SHARE,
    engagement_prior=parse_prior(DEFAULT_ENGAGEMENT_PRIOR),
)
NO_GUARDRAILS = Guardrails(require_contact=False)
