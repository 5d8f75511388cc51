"""The worker's HTTP API (aiohttp): health, readiness, Prometheus metrics, segments, and profile reads.

``GET /profiles/{id}`` needs ``Authorization: Bearer <STREAMCDP_API_TOKEN>``. Any worker can be asked:
the one that does not hold the id's partition answers 307 with the owner's URL (every worker knows the
partition → web address map from the consumer group's assignment, ``streams.assignor``).
"""

from __future__ import annotations

import hmac
import time
from urllib.parse import quote

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.identity import NO_IDENTITY
from core.profile.document import profile_document
from core.replenishment import predict_replenishment
from streams import metrics
from streams.codecs import encode_json
from streams.partitioning import owning_partition
from streams.runtime import Runtime
from streams.state_store import PartitionStore
from streams.tables import IDENTITIES, PROFILES, SEGMENT_SIZES


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=encode_json(body), status=status, content_type="application/json", headers=headers)


class Api:
    """The views over one runtime's stores."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.audience_policy = runtime.policy.audiences

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.prometheus_metrics),
            web.get("/segments", self.segments),
            web.get("/profiles/{customer_id}", self.profile),
        ]

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self.settings.api_token.encode())

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = self.runtime.ready
        return _json({"ready": ready, "partitions": sorted(self.runtime.stores)}, status=200 if ready else 503)

    async def prometheus_metrics(self, request: web.Request) -> web.Response:
        metrics.tally.publish()
        return web.Response(body=generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def segments(self, request: web.Request) -> web.Response:
        """Definitions and current sizes (members in the partitions this worker holds)."""
        if not self._authorised(request):
            return _json({"error": "missing or wrong bearer token"}, status=401)
        sizes: dict[str, int] = {}
        for store in list(self.runtime.stores.values()):
            for segment, count in store.items(SEGMENT_SIZES):
                sizes[segment.decode()] = sizes.get(segment.decode(), 0) + count
        definitions = self.audience_policy.definitions
        listing = [
            {
                "name": rule.name,
                "group": rule.group,
                "rule": rule.rule,
                "description": rule.description,
                "size": sizes.get(rule.name, 0),
            }
            for rule in definitions.rules
        ]
        return _json(
            {
                "source": definitions.source,
                "version": self.audience_policy.version,
                "groups": [group.name for group in definitions.groups],
                "segments": listing,
                "counted_partitions": sorted(self.runtime.stores),
            }
        )

    def _locate(self, key: str, requested: str) -> PartitionStore | web.Response:
        """The store of ``key``'s partition when this worker holds it; else a 307 to the owner (503: no owner
        known). The redirect names the id the client asked for, so the owner's answer says it as a local one
        would."""
        partition = owning_partition(key.encode(), self.settings.topic_partitions)
        store = self.runtime.stores.get(partition)
        if store is not None:
            return store
        owner = self.runtime.assignor.owners.get(partition)
        if owner is None or owner == self.runtime.assignor.web_url:
            return _json(
                {"error": f"partition {partition} is not assigned yet"}, status=503, headers={"Retry-After": "1"}
            )
        location = f"{owner}/profiles/{quote(key, safe='')}"
        if requested != key:
            location += f"?requested_id={quote(requested, safe='')}"
        return _json({"redirect": location}, status=307, headers={"Location": location})

    async def profile(self, request: web.Request) -> web.Response:
        """A profile by its canonical id or by any id linked to it (anonymous id, earlier user id)."""
        if not self._authorised(request):
            return _json({"error": "missing or wrong bearer token"}, status=401)
        if not self.runtime.ready:  # restoring or rebalancing: a store may be half restored
            return _json({"error": "worker is restoring or rebalancing"}, status=503, headers={"Retry-After": "1"})
        requested = request.query.get("requested_id") or request.match_info["customer_id"]
        key = request.match_info["customer_id"]
        store = self._locate(key, requested)
        if isinstance(store, web.Response):
            return store
        identity = store.get(IDENTITIES, key.encode()) or NO_IDENTITY
        if identity.redirect_to is not None:
            key = identity.redirect_to
            store = self._locate(key, requested)
            if isinstance(store, web.Response):
                return store
        profile = store.get(PROFILES, key.encode())
        if profile is None:
            return _json({"error": f"no profile for id {requested!r}"}, status=404)
        document = profile_document(profile, now=time.time(), policy=self.runtime.policy.profile)
        catalog = self.audience_policy.definitions.consumables if self.audience_policy is not None else None
        if catalog is not None:
            # Expected next purchase per consumable (the customer's own cadence, else the catalog cycle).
            predictions = predict_replenishment(profile.product_purchases, catalog)
            document["replenishment"] = [msgspec.to_builtins(p) for p in predictions.values()]
        if key != requested:
            document["requested_id"] = requested
        return _json(document)


async def start_web(runtime: Runtime) -> web.AppRunner:
    """Serve the API on ``STREAMCDP_WEB_HOST:STREAMCDP_WEB_PORT``; the caller cleans the runner up."""
    application = web.Application()
    application.add_routes(Api(runtime).routes())
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, runtime.settings.web_host, runtime.settings.web_port).start()
    return runner
