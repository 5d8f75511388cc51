"""Personal data handling: keyed hashes of email and phone, and which identify traits are never stored.

Profiles keep only ``hash_identifier`` values of email and phone (HMAC-SHA256 with a secret key the
caller passes in, from ``Settings.pii_hash_key``): stable per customer so audiences can be matched,
useless to anyone without the key. Other direct identifiers (names, street address, raw birthday, IP)
are dropped by ``is_pii_trait`` / ``looks_like_contact`` before a trait reaches the profile.
"""

from __future__ import annotations

import hashlib
import hmac

# Trait names (normalised by ``trait_key``) that identify a person directly and are never stored raw.
PII_TRAIT_KEYS = frozenset(
    {
        "email",
        "emailaddress",
        "phone",
        "phonenumber",
        "mobile",
        "mobilephone",
        "cell",
        "telephone",
        "name",
        "firstname",
        "lastname",
        "fullname",
        "username",
        "address",
        "street",
        "streetaddress",
        "postalcode",
        "zip",
        "zipcode",
        "birthday",
        "birthdate",
        "dateofbirth",
        "dob",
        "ip",
        "ipaddress",
        "ssn",
        "passport",
        "iban",
        "creditcard",
        "avatar",
    }
)


def trait_key(name: str) -> str:
    """A trait name folded for lookups: ``firstName``, ``first_name`` and ``First Name`` → ``firstname``."""
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased: ``" Ann@Example.COM "`` → ``"ann@example.com"``."""
    return value.strip().lower()


def normalise_phone(value: str) -> str:
    """Digits only, keeping a leading ``+``: ``"+49 (30) 123-45"`` → ``"+493012345"``."""
    text = value.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    return f"+{digits}" if text.startswith("+") else digits


def hash_identifier(value: str, key: str | bytes) -> str:
    """HMAC-SHA256 (hex) of a normalised email (if ``value`` contains ``@``) or phone number.

    ``key`` is the secret (``Settings.pii_hash_key``); the same identifier and key always give the same
    hash, so profiles can be matched on it without storing the identifier.
    """
    normalised = normalise_email(value) if "@" in value else normalise_phone(value)
    secret = key.encode() if isinstance(key, str) else key
    return hmac.new(secret, normalised.encode(), hashlib.sha256).hexdigest()


def is_pii_trait(name: str) -> bool:
    """Whether a trait of this name is a direct identifier that must not be stored raw."""
    return trait_key(name) in PII_TRAIT_KEYS


def looks_like_contact(value: object) -> bool:
    """A string that is probably an email address or a phone number (kept out of free-form traits)."""
    if not isinstance(value, str):
        return False
    if "@" in value:
        return True
    digits = sum(ch.isdigit() for ch in value)
    return digits >= 7 and all(ch.isdigit() or ch in " +-()./" for ch in value.strip())
