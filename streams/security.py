"""Start-up checks of the secrets, the workers' signed internal calls, and the personal-data settings.

- ``check_production_settings``: a worker (or collector) refuses to start with an empty API token or PII
  hash key, and with the development defaults unless ``STREAMCDP_ENV=dev``.
- Internal profile reads: a worker that does not hold a profile's partition fetches it from the owner
  instead of redirecting the client (a redirect would make clients resend their bearer token to whatever
  URL the consumer group advertised). The call carries no token: it is signed with a key derived from the
  API token (HMAC-SHA256 over method, path, time and the assignment both sides route by), valid for a few
  seconds and for that one path, and the owner signs its answer the same way, so a member that joined the
  group without the token can neither read profiles nor pass off answers. Only owners of the current
  assignment whose URL matches ``STREAMCDP_TRUSTED_PEER_URL_PATTERN`` are asked.
- ``pii_policy`` and ``privacy_topic_configs``: the settings of ``core.privacy`` and of the topics that
  hold personal data (dead letters' retention; the changelog's compaction bound).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from core.privacy import PiiPolicy
from schemas.errors import ConfigError
from streams.settings import DEV_API_TOKEN, DEV_PII_HASH_KEY, Settings

if TYPE_CHECKING:
    from schemas.topics import TopicNames

# How far the signing time of an internal call may be from the receiver's clock (either way).
SIGNATURE_MAX_AGE_S = 30.0
SIGNATURE_HEADER = "X-Streamcdp-Signature"
ASSIGNMENT_HEADER = "X-Streamcdp-Assignment"


def check_production_settings(settings: Settings) -> None:
    """Raise ``ConfigError`` naming the setting to change when the secrets are empty, or are the development
    defaults outside ``STREAMCDP_ENV=dev``. Called once at worker (and collector) start."""
    problems = []
    if not settings.api_token.strip():
        problems.append("STREAMCDP_API_TOKEN is empty: the profile API would accept an empty bearer token")
    if not settings.pii_hash_key.strip():
        problems.append("STREAMCDP_PII_HASH_KEY is empty: email and phone hashes would be unkeyed")
    if settings.env != "dev":
        if settings.api_token == DEV_API_TOKEN:
            problems.append(f"STREAMCDP_API_TOKEN is the development default {DEV_API_TOKEN!r}")
        if settings.pii_hash_key == DEV_PII_HASH_KEY:
            problems.append(f"STREAMCDP_PII_HASH_KEY is the development default {DEV_PII_HASH_KEY!r}")
    if problems:
        msg = (
            "refusing to start: "
            + "; ".join(problems)
            + ". Set each to a long random secret (STREAMCDP_ENV=dev allows the defaults, for local development)."
        )
        raise ConfigError(msg)


# --- personal data ----------------------------------------------------------------------------------


def pii_policy(settings: Settings) -> PiiPolicy:
    """``core.privacy``'s policy from the settings."""
    return PiiPolicy(
        hash_key=settings.pii_hash_key.encode(),
        pii_keys=settings.pii_trait_set | settings.pii_hashed_trait_set,
        hashed_keys=settings.pii_hashed_trait_set,
        keep_deadletter_originals=settings.deadletter_keep_pii,
    )


def privacy_topic_configs(settings: Settings, names: TopicNames) -> dict[str, dict[str, str]]:
    """Topic name → configs the project sets when it creates the topic: the dead letters' retention, and the
    changelog's compaction bound (an overwritten or deleted value is gone within
    ``changelog_max_compaction_lag_ms`` plus one log-cleaner pass; deletion markers after
    ``changelog_delete_retention_ms`` more)."""
    return {
        names.deadletter: {"retention.ms": str(settings.deadletter_retention_ms)},
        names.state_changelog(settings.app_id): {
            "cleanup.policy": "compact",
            "max.compaction.lag.ms": str(settings.changelog_max_compaction_lag_ms),
            "delete.retention.ms": str(settings.changelog_delete_retention_ms),
        },
    }


# --- workers' internal calls --------------------------------------------------------------------------


def internal_signing_key(api_token: str) -> bytes:
    """The key of internal signatures, derived so that a signature never reveals (or is) the token."""
    return hmac.new(api_token.encode(), b"streamcdp internal calls v1", hashlib.sha256).digest()


def assignment_tag(owners: Mapping[int, str]) -> str:
    """A short digest of the partition → URL map: members of one group generation share it."""
    return hashlib.sha256(orjson.dumps(sorted(owners.items()))).hexdigest()[:16]


def _signature(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def sign_request(key: bytes, path_qs: str, assignment: str, now: float) -> str:
    """Header value signing ``GET path_qs`` at ``now`` by a worker routing with ``assignment``."""
    stamp = f"{now:.3f}"
    return f"{stamp}:{_signature(key, 'GET', path_qs, stamp, assignment)}"


def verify_request(key: bytes, header: str, path_qs: str, assignment: str, now: float) -> bool:
    """Whether ``header`` signs ``GET path_qs`` with this key and assignment within ``SIGNATURE_MAX_AGE_S``."""
    stamp, _, signature = header.partition(":")
    try:
        signed_at = float(stamp)
    except ValueError:
        return False
    if abs(now - signed_at) > SIGNATURE_MAX_AGE_S:
        return False
    return hmac.compare_digest(signature, _signature(key, "GET", path_qs, stamp, assignment))


def sign_response(key: bytes, request_signature: str, status: int, body: bytes) -> str:
    """Header value binding an answer (status and body) to the signed request it answers."""
    return _signature(key, "answer", request_signature, str(status), hashlib.sha256(body).hexdigest())


def verify_response(key: bytes, header: str, request_signature: str, status: int, body: bytes) -> bool:
    return hmac.compare_digest(header, sign_response(key, request_signature, status, body))


def trusted_peer(url: str, pattern: re.Pattern[str], owners: Mapping[int, str], own_url: str) -> bool:
    """Whether profile reads may be forwarded to ``url``: another member of the current assignment
    (``owners``), advertising a URL that matches the configured pattern in full."""
    return url != own_url and url in owners.values() and pattern.fullmatch(url) is not None
