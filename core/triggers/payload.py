"""The message payload of a decided trigger: everything a sender needs to render it, from the profile.

``build_trigger`` is pure: the profile, the pending trigger, its definition, the time and the channel in;
a ``schemas.triggers.Trigger`` out. Items come from the cart or the entry's product (as the events carried
them: name, category, price, image and product URL); recommendations rank the customer's recently viewed
products by how often they were viewed, then how recently, never one in the cart, in the message, or
bought in the last ``JUST_BOUGHT_S``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import NamedTuple

from core.triggers.definitions import TriggerDefinition
from schemas.profile import Profile
from schemas.triggers import Fact, PendingTrigger, Trigger, TriggerItem

JUST_BOUGHT_S = 30 * 86400.0
TREATMENT = "treatment"
HOLDOUT_TREATMENT = "holdout"
OFFER_PLACEHOLDER = "{trigger}"


def trigger_id_for(customer_id: str, kind: str, entered_at: float, episode: str = "") -> str:
    """Same customer (the id at entry), kind, entry time and episode → same id; senders deduplicate on it."""
    digest = hashlib.sha256(f"{customer_id}|{kind}|{entered_at:.6f}|{episode}".encode()).hexdigest()
    return f"{kind}:{digest[:24]}"


def _items(profile: Profile, pending: PendingTrigger, source: str) -> tuple[TriggerItem, ...]:
    if source == "cart":
        return tuple(
            TriggerItem(
                product_id=item.product_id,
                name=item.name,
                category=item.category,
                price=item.price,
                quantity=item.quantity,
                image_url=item.image_url,
                url=item.url,
            )
            for item in profile.cart
        )
    facts = pending.facts
    if source == "entry" and facts.get("product_id"):
        price = facts.get("price", 0)
        return (
            TriggerItem(
                product_id=str(facts["product_id"]),
                name=str(facts.get("name", "")),
                category=str(facts.get("category", "")),
                price=price if isinstance(price, int) else 0,
                image_url=str(facts.get("image_url", "")),
                url=str(facts.get("url", "")),
            ),
        )
    return ()


def recommend(profile: Profile, *, exclude: set[str], at: float, count: int) -> tuple[str, ...]:
    """Up to ``count`` product ids the customer showed interest in, never in ``exclude``, the cart, or just bought."""
    if count <= 0:
        return ()
    in_cart = {item.product_id for item in profile.cart} if profile.cart else ()
    purchases = profile.product_purchases
    views = profile.product_views
    horizon = at - JUST_BOUGHT_S
    # Each candidate as its own sort key (most viewed, then most recent, then the id): one plain tuple sort,
    # no key function called per candidate (this runs for every message sent).
    ranked = []
    for pid, viewed_at in profile.recently_viewed:  # only the viewed products' purchases are looked up
        if pid in exclude or pid in in_cart:
            continue
        times = purchases.get(pid)
        if times and times[-1] >= horizon:
            continue
        ranked.append((-views.get(pid, 0), -viewed_at, pid))
    ranked.sort()
    return tuple(entry[2] for entry in ranked[:count])


class MessageContent(NamedTuple):
    """What a message shows: its items and the recommended product ids (``message_content``)."""

    items: tuple[TriggerItem, ...]
    recommendations: tuple[str, ...]


def message_content(
    profile: Profile, pending: PendingTrigger, definition: TriggerDefinition, *, at: float
) -> MessageContent:
    """The items the definition's ``content.items`` names and the recommendations, never one of the items or
    of the entry's products (an order's, for a cross-sell)."""
    items = _items(profile, pending, definition.content.items)
    exclude = {item.product_id for item in items}
    exclude.update(str(pending.facts.get("product_ids", "")).split(","))
    return MessageContent(items, recommend(profile, exclude=exclude, at=at, count=definition.content.recommendations))


def asks_for_content(definition: TriggerDefinition) -> bool:
    """Whether a message of ``definition`` is empty without items and recommendations: it asks for either and
    carries no offer (an offer is content of its own; a definition that asks for neither is a template alone)."""
    content = definition.content
    return not content.offer and (content.items != "none" or content.recommendations > 0)


def _offer(definition: TriggerDefinition, trigger_id: str) -> dict[str, Fact]:
    code = trigger_id.rsplit(":", 1)[-1][:8].upper()
    return {
        key: value.replace(OFFER_PLACEHOLDER, code) if isinstance(value, str) else value
        for key, value in definition.content.offer.items()
    }


def _reason(definition: TriggerDefinition, pending: PendingTrigger, items: tuple[TriggerItem, ...]) -> str:
    about = f", {len(items)} item(s)" if items else ""
    product = pending.facts.get("product_id")
    about += f", product {product}" if product and not items else ""
    return f"{definition.reason_head}{_utc_text(pending.entered_at)}, {definition.wait_text}{about}"


def _utc_text(at: float) -> str:
    """``at`` as ``YYYY-MM-DD HH:MM:SS UTC`` (``isoformat`` where it writes the same, a third cheaper)."""
    moment = datetime.fromtimestamp(at, tz=UTC)
    if moment.year < 1000:  # strftime's %Y does not pad years below 1000
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{moment.isoformat(' ', 'seconds')[:19]} UTC"


def build_trigger(
    profile: Profile,
    pending: PendingTrigger,
    definition: TriggerDefinition,
    *,
    at: float,
    channel: str,
    reason: str = "",
    holdout: bool = False,
    content: MessageContent | None = None,
) -> Trigger:
    """The payload of ``pending`` decided at ``at`` for ``channel`` (chosen for ``reason``).

    ``holdout``: the control arm's copy (``treatment: holdout``, published on ``triggers.holdout`` only);
    ``content``: ``message_content`` of the same inputs when the guards already asked it.
    """
    items, recommendations = content or message_content(profile, pending, definition, at=at)
    currency = next((item.currency for item in profile.cart if item.currency), None) if items else None
    locale = profile.custom_traits.get("locale")
    return Trigger(
        trigger_id=pending.trigger_id,
        kind=definition.name,
        customer_id=profile.customer_id,
        user_id=profile.user_id,
        channel=channel,
        channels=definition.channels,
        decided_at=at,
        send_at=at,
        reason=_reason(definition, pending, items),
        priority=definition.priority,
        timezone=profile.timezone,
        locale=locale if isinstance(locale, str) else None,
        items=items,
        value=sum(max(0, item.price) * max(0, item.quantity) for item in items),  # bad input: 0, as cart_value
        currency=currency or (str(pending.facts["currency"]) if "currency" in pending.facts else None),
        recommendations=recommendations,
        offer=_offer(definition, pending.trigger_id),
        content=dict(definition.content.extra),
        segments=profile.segments,
        treatment=HOLDOUT_TREATMENT if holdout else TREATMENT,
        channel_reason=reason,
    )
