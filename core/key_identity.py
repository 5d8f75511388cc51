"""``KeyIdentity``: the identity state the profile stage keeps per key (``core.identity`` decides it).

A module of its own so that ``core.identity`` can be compiled with mypyc (scripts/build_compiled.sh) while
this msgspec Struct is not: mypyc builds a class from a compiled module without its class keywords
(``frozen``, ``kw_only``, ``omit_defaults``), which would silently change it.
"""

from __future__ import annotations

import msgspec

from schemas.commands import AbsorbProfile


class KeyIdentity(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The identity state of one key (stored by the agent in ``alias_to_customer``; absent = default).

    ``redirect_to``: canonical id this key was linked to (then the key has no profile).
    ``link_kind`` / ``linked_at``: how and by which event time the redirect was made.
    ``linked_users``: distinct customers this key was ever linked to (over-merge guard, at most
    ``max_users`` and ``MAX_LINKED_USERS``).
    ``forgotten_at``: the customer of this key was deleted at this time; older events are dropped.
    ``sent_absorb``: the merge this key sent with its redirect, kept so that a replayed link (after a
    crash that persisted the redirect but lost the message) sends it again; the customer's key merges
    it once per ``absorb_id``. Dropped when the customer is forgotten (no data outlives a deletion).
    ``applied_before_link``: the message ids this key's own profile had applied when it was linked away
    (its ``applied_ids``, kept across relinks). Those events travel inside the absorbed profile, so a
    replay of one of them is dropped here instead of being forwarded (``replayed_before_link``): the
    customer's own ``applied_ids`` cannot be relied on for it (the merge may not have reached the
    customer yet after a crash, or the capped union of the merge evicted the absorbed ids); at most
    ``MAX_APPLIED_IDS`` of them. So an identity's record is bounded by its profile's (``sent_absorb``) plus
    those lists of ids (``tests/unit/test_bounds_records.py``).
    """

    redirect_to: str | None = None
    link_kind: str = ""
    linked_at: float = 0.0
    linked_users: tuple[str, ...] = ()
    forgotten_at: float | None = None
    sent_absorb: AbsorbProfile | None = None
    applied_before_link: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        """True when there is nothing to store (the agent deletes the table entry)."""
        return self == NO_IDENTITY


NO_IDENTITY = KeyIdentity()
