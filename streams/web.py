"""The worker's HTTP API: health, readiness, Prometheus metrics, and profile reads.

``GET /profiles/{id}`` needs ``Authorization: Bearer <STREAMCDP_API_TOKEN>`` and is routed by faust to
the worker that owns the id's partition, so any worker can be asked.
"""

from __future__ import annotations

import hmac
import time

import msgspec
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.profile import profile_document
from core.replenishment import predict_replenishment
from streams import metrics
from streams.app import alias_to_customer, app, customer_to_profile, segment_partition_to_size, settings
from streams.codecs import decode_identity, decode_profile
from streams.stage_config import stage_policy


audience_policy = stage_policy().audiences


def _is_ready() -> bool:
    recovery = app.tables.recovery
    return recovery.completed.is_set() and not app.in_recovery and not app.rebalancing


def _authorised(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), settings.api_token.encode())


@app.page("/healthz")
async def healthz(self: web.View, request: web.Request) -> web.Response:
    return self.json({"status": "ok"})


@app.page("/readyz")
async def readyz(self: web.View, request: web.Request) -> web.Response:
    ready = _is_ready()
    return self.json({"ready": ready}, status=200 if ready else 503)


@app.page("/metrics")
async def prometheus_metrics(self: web.View, request: web.Request) -> web.Response:
    return self.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def _owned_here(key: str) -> bool:
    owner = app.router.key_store(customer_to_profile.name, key)
    return (owner.host, owner.port) == (app.conf.canonical_url.host, app.conf.canonical_url.port)


@app.page("/segments")
async def segments(self: web.View, request: web.Request) -> web.Response:
    """Definitions and current sizes (members in the partitions this worker holds)."""
    if not _authorised(request):
        return self.json({"error": "missing or wrong bearer token"}, status=401)
    sizes: dict[str, int] = {}
    partitions: set[int] = set()
    for key, value in segment_partition_to_size.items():
        segment, _, partition = key.decode().rpartition("#")
        sizes[segment] = sizes.get(segment, 0) + int(value)
        partitions.add(int(partition))
    definitions = audience_policy.definitions
    listing = [
        {"name": rule.name, "group": rule.group, "rule": rule.rule, "description": rule.description,
         "size": sizes.get(rule.name, 0)}
        for rule in definitions.rules
    ]
    return self.json({"source": definitions.source, "version": audience_policy.version,
                      "groups": [group.name for group in definitions.groups], "segments": listing,
                      "counted_partitions": sorted(partitions)})


@app.page("/profiles/{customer_id}")
class ProfileView(web.View):
    """A profile by its canonical id or by any id linked to it (anonymous id, earlier user id)."""

    @app.table_route(table=customer_to_profile, match_info="customer_id")
    async def get(self, request: web.Request, customer_id: str) -> web.Response:
        if not _authorised(request):
            return self.json({"error": "missing or wrong bearer token"}, status=401)
        key = customer_id
        identity = decode_identity(alias_to_customer.get(key.encode()))
        if identity.redirect_to is not None:
            key = identity.redirect_to
            if not _owned_here(key):
                # Another worker owns the canonical profile: send the client there through our own router.
                location = f"/profiles/{key}"
                return self.json({"redirect": location}, status=307, headers={"Location": location})
        profile = decode_profile(customer_to_profile.get(key.encode()))
        if profile is None:
            return self.json({"error": f"no profile for id {customer_id!r}"}, status=404)
        document = profile_document(profile, now=time.time())
        catalog = audience_policy.definitions.consumables if audience_policy is not None else None
        if catalog is not None:
            # Expected next purchase per consumable (the customer's own cadence, else the catalog cycle).
            predictions = predict_replenishment(profile.product_purchases, catalog)
            document["replenishment"] = [msgspec.to_builtins(p) for p in predictions.values()]
        if key != customer_id:
            document["requested_id"] = customer_id
        return self.json(document)
