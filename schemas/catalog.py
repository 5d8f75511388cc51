"""The catalog of the event contract: which track names exist, their family, aliases and required properties.

One place for the names, so the validator (``schemas.validation``), the JSON Schema files
(``schemas/json/``), the producer tool and the workload generator cannot drift apart; a unit test
checks that the JSON Schema files list exactly these names.
"""

from __future__ import annotations

from schemas.events import CLICKSTREAM, CUSTOMER, MESSAGING, PURCHASE

# Channels a message can go out on (and a consent can be given for); the same as the trigger topics'.
CHANNELS = frozenset({"email", "sms", "whatsapp", "webpush", "apppush"})

# Segment's e-commerce v2 events a retailer's tracker sends beyond the ones the profile models in detail
# (CONTRACT.md says what each changes; the workload generator does not simulate them). They were valid
# before as track events of family "other"; they require no property, so no message that was valid
# becomes invalid (the contract version stays).
ECOMMERCE_V2_CLICKSTREAM_EVENTS = frozenset(
    {
        "Product Added to Wishlist",
        "Product Shared",
        "Product Reviewed",
        "Coupon Applied",
        "Checkout Step Completed",
        "Promotion Viewed",
        "Promotion Clicked",
    }
)
ECOMMERCE_V2_PURCHASE_EVENTS = frozenset({"Order Cancelled", "Order Updated"})
ECOMMERCE_V2_EVENTS = ECOMMERCE_V2_CLICKSTREAM_EVENTS | ECOMMERCE_V2_PURCHASE_EVENTS

CLICKSTREAM_EVENTS = frozenset(
    {
        "Products Searched",
        "Product List Viewed",
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Cart Viewed",
        "Checkout Started",
        *ECOMMERCE_V2_CLICKSTREAM_EVENTS,
    }
)
PURCHASE_EVENTS = frozenset({"Order Completed", "Order Refunded", *ECOMMERCE_V2_PURCHASE_EVENTS})
MESSAGING_EVENTS = frozenset(
    {
        "Message Sent",
        "Message Delivered",
        "Message Opened",
        "Message Clicked",
        "Message Bounced",
        "Message Replied",
        "Unsubscribed",
    }
)
CUSTOMER_EVENTS = frozenset({"Consent Updated", "Deletion Requested"})

# Segment's email spec names → our canonical messaging names; the channel becomes "email".
EMAIL_ALIASES = {
    "Email Sent": "Message Sent",
    "Email Delivered": "Message Delivered",
    "Email Opened": "Message Opened",
    "Email Link Clicked": "Message Clicked",
    "Email Bounced": "Message Bounced",
    "Email Replied": "Message Replied",
}

TRACK_FAMILIES: dict[str, str] = {
    **{name: CLICKSTREAM for name in CLICKSTREAM_EVENTS},
    **{name: PURCHASE for name in PURCHASE_EVENTS},
    **{name: MESSAGING for name in (*MESSAGING_EVENTS, *EMAIL_ALIASES)},
    **{name: CUSTOMER for name in CUSTOMER_EVENTS},
}

# Track events whose properties must name one product.
PRODUCT_EVENTS = frozenset({"Product Viewed", "Product Added", "Product Removed"})

# Property values that are ids: normalised to strings.
ID_PROPERTIES = ("product_id", "order_id", "trigger_id", "store_id", "checkout_id", "cart_id", "list_id")

# Monetary properties: decimal major units in, integer minor units (cents) out.
MONEY_PROPERTIES = ("price", "total", "revenue", "value", "subtotal", "discount", "shipping", "tax")

# identify traits we know; values of other traits pass through untouched.
STRING_TRAITS = ("email", "phone", "gender", "city", "country", "timezone", "loyalty_tier", "birthday")
