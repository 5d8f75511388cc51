"""Identity resolution: which ids belong to one customer, and merging their profiles.

Per key the profile stage keeps a ``KeyIdentity`` next to the (optional) profile. A key that was linked
away has ``redirect_to`` set and no profile: its commands are forwarded to the canonical key. Links are
discovered by the canonical key's profile (``links_revealed``), decided at the alias's key
(``decide_link``), and the alias's profile travels to the canonical key to be merged
(``core.profile.merge.merge_profiles``).

Rules (all decided at the alias's key, so each alias is changed by one partition, in order):

- ``identify`` links (an event with both userId U and anonymousId A) never merge two user ids: if A
  has a profile whose ``user_id`` is A, the link is refused (note ``link_refused``), as it is when A's
  current redirect came from an explicit ``alias`` call (explicit merges are sticky).
- ``alias`` links (Segment alias: previousId P → userId U) merge P into U whatever P is.
- Over-merge guard: an id already linked to ``max_users`` distinct customers is not linked to another
  (note ``overmerge_blocked``); the link attempt changes nothing, the alias keeps its own state.
- A shared device linked to a second customer points to whoever was linked by the latest event time
  (last write wins, ``link_stale`` for an older link); its old data stays with the first customer.
- A link whose customer was merged into the alias earlier (a cycle) is refused (``link_cycle_refused``).
- A link older than the alias's ``forgotten_at`` (the customer was deleted) is dropped.
- After a merge the canonical key re-points the absorbed profile's own linked ids straight to itself
  (``LinkIdentity`` with ``via`` = the absorbed id), so chains stay one hop long and a later deletion
  can unlink every id directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from core.key_identity import NO_IDENTITY, KeyIdentity  # noqa: F401  (NO_IDENTITY: re-exported, its old home)
from core.profile.bounded import clipped_id, is_newer
from core.profile.policy import MAX_APPLIED_IDS, MAX_LINKED_IDS, MAX_LINKED_USERS
from schemas.commands import AbsorbProfile, LinkIdentity, UnlinkIdentity
from schemas.events import Event
from schemas.profile import Profile

IDENTIFY = "identify"
ALIAS = "alias"

# Notes: what happened, for the agent's counters (one label value each).
LINKED = "linked"
RELINKED = "relinked"
LINK_DUPLICATE = "link_duplicate"
LINK_STALE = "link_stale"
LINK_REFUSED = "link_refused"
LINK_CYCLE_REFUSED = "link_cycle_refused"
LINK_FORGOTTEN = "link_forgotten"
OVERMERGE_BLOCKED = "overmerge_blocked"
UNLINKED = "unlinked"


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


def link_id_for(alias: str, customer_id: str, kind: str) -> str:
    """Same alias, customer and kind → same id."""
    return f"link:{_digest(alias, customer_id, kind)}"


def absorb_id_for(link: LinkIdentity) -> str:
    """Deterministic per link decision, so a re-sent absorb is merged once."""
    return f"absorb:{_digest(link.link_id, f'{link.at:.6f}')}"


def links_revealed(profile: Profile, event: Event, *, again: bool = False) -> tuple[LinkIdentity, ...]:
    """Links the canonical ``profile`` must ask for after applying ``event`` (first sighting only).

    An event with a userId and an anonymousId links the anonymous id (``identify``) the first time the
    profile sees it (ids in ``profile.linked_ids`` are skipped, so a device seen again by a user it is
    already linked to costs nothing). An alias call always links its previousId (``alias``): it is rare,
    explicit, and may follow a refused identify link of the same id; the alias's key deduplicates it.
    ``again``: every link of the event, known or not — for a replayed event whose first links may have
    been lost in a crash (the alias's key deduplicates them).
    """
    key = profile.customer_id
    anonymous_id = event.anonymous_id
    if (
        not again
        and event.type != "alias"
        and (event.user_id is None or not anonymous_id or anonymous_id == key or anonymous_id in profile.linked_ids)
    ):
        return ()  # nearly every event: a known device of its user, or no user yet
    wanted: list[tuple[str, str]] = []
    if event.type == "alias" and event.previous_id:
        wanted.append((event.previous_id, ALIAS))
    if event.user_id is not None and event.anonymous_id:
        wanted.append((event.anonymous_id, IDENTIFY))
    return tuple(
        LinkIdentity(alias=alias, customer_id=key, at=event.timestamp, link_id=link_id_for(alias, key, kind), kind=kind)
        for alias, kind in wanted
        if alias != key and (again or kind == ALIAS or alias not in profile.linked_ids)
    )


def replayed_before_link(identity: KeyIdentity, event: Event) -> bool:
    """True when a key that redirects receives an event its own profile applied before it was linked away:
    a replay whose effect already travelled to the customer inside the absorbed profile (issue 10)."""
    return identity.redirect_to is not None and clipped_id(event.message_id) in identity.applied_before_link


def with_linked_ids(profile: Profile, ids: tuple[str, ...] | list[str]) -> Profile:
    """``profile`` remembering ``ids`` as linked (newest last, capped)."""
    fresh = [i for i in dict.fromkeys(ids) if i not in profile.linked_ids and i != profile.customer_id]
    if not fresh:
        return profile
    return msgspec.structs.replace(profile, linked_ids=(*profile.linked_ids, *fresh)[-MAX_LINKED_IDS:])


@dataclass(frozen=True)
class LinkDecision:
    """The alias key's new identity and profile after a ``LinkIdentity``, the absorb to send, and a note."""

    identity: KeyIdentity
    profile: Profile | None
    absorb: AbsorbProfile | None
    note: str


def decide_link(identity: KeyIdentity, profile: Profile | None, link: LinkIdentity, *, max_users: int) -> LinkDecision:
    """Decide ``link`` at the alias's key (rules in the module docstring)."""
    customer = link.customer_id
    if link.alias == customer:
        return LinkDecision(identity, profile, None, LINK_DUPLICATE)
    if identity.redirect_to == customer:
        # Already linked: perhaps a replay whose first absorb was lost; re-sending it is idempotent.
        return LinkDecision(identity, profile, identity.sent_absorb, LINK_DUPLICATE)
    if identity.forgotten_at is not None and link.at <= identity.forgotten_at:
        return LinkDecision(identity, profile, None, LINK_FORGOTTEN)
    if link.via:
        if identity.redirect_to != link.via:
            return LinkDecision(identity, profile, None, LINK_STALE)
        users = tuple(dict.fromkeys(customer if u == link.via else u for u in identity.linked_users))
        # The data already travelled inside ``via``'s profile: nothing left to re-send from here.
        updated = msgspec.structs.replace(
            identity, redirect_to=customer, linked_users=users or (customer,), sent_absorb=None
        )
        return LinkDecision(updated, profile, None, RELINKED)
    if profile is not None and customer in profile.linked_ids:
        return LinkDecision(identity, profile, None, LINK_CYCLE_REFUSED)
    if link.kind != ALIAS and ((profile is not None and profile.user_id == link.alias) or identity.link_kind == ALIAS):
        return LinkDecision(identity, profile, None, LINK_REFUSED)
    if customer not in identity.linked_users and len(identity.linked_users) >= max_users:
        return LinkDecision(identity, profile, None, OVERMERGE_BLOCKED)
    users = tuple(dict.fromkeys((*identity.linked_users, customer)))[-min(max(max_users, 1), MAX_LINKED_USERS) :]
    if identity.redirect_to is not None and not is_newer(link.at, customer, identity.linked_at, identity.redirect_to):
        return LinkDecision(msgspec.structs.replace(identity, linked_users=users), profile, None, LINK_STALE)
    absorb = None
    if profile is not None:
        absorb = AbsorbProfile(customer_id=customer, absorbed=profile, absorb_id=absorb_id_for(link), linked_at=link.at)
    updated = msgspec.structs.replace(
        identity,
        redirect_to=customer,
        link_kind=link.kind,
        linked_at=link.at,
        linked_users=users,
        sent_absorb=absorb,
        applied_before_link=profile.applied_ids[-MAX_APPLIED_IDS:]
        if profile is not None
        else identity.applied_before_link,
    )
    return LinkDecision(updated, None, absorb, RELINKED if identity.redirect_to is not None else LINKED)


def decide_unlink(identity: KeyIdentity, unlink: UnlinkIdentity) -> KeyIdentity:
    """The alias's identity after its customer was forgotten: redirect dropped (if it pointed there),
    the customer's id removed from ``linked_users``, replays older than the deletion blocked."""
    users = tuple(u for u in identity.linked_users if u != unlink.customer_id)
    if identity.redirect_to != unlink.customer_id:
        kept = (
            identity.sent_absorb
            if identity.sent_absorb is None or identity.sent_absorb.customer_id != unlink.customer_id
            else None
        )
        return msgspec.structs.replace(identity, linked_users=users, sent_absorb=kept)
    forgotten_at = max(identity.forgotten_at or unlink.at, unlink.at)
    return KeyIdentity(linked_users=users, forgotten_at=forgotten_at)


def flattening_links(merged: Profile, absorbed: Profile, linked_at: float) -> tuple[LinkIdentity, ...]:
    """After ``absorbed`` was merged into ``merged``: re-point the ids that redirected to the absorbed key."""
    key = merged.customer_id
    via = absorbed.customer_id
    return tuple(
        LinkIdentity(
            alias=alias, customer_id=key, at=linked_at, link_id=link_id_for(alias, key, ALIAS), kind=ALIAS, via=via
        )
        for alias in absorbed.linked_ids
        if alias not in (key, via)
    )
