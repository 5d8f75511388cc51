"""The worker's HTTP API (aiohttp): health, readiness, Prometheus metrics, segments, and profile reads.

``GET /profiles/{id}`` needs ``Authorization: Bearer <STREAMCDP_API_TOKEN>``. Any worker can be asked and
answers itself: when another worker holds the id's partition (every worker knows the partition → web
address map from the consumer group's assignment, ``streams.assignor``), it fetches the profile from that
owner over ``GET /internal/profiles/{id}``, signed as ``streams.security`` describes, and only from owners
whose URL it trusts. Clients never get a redirect, so their token never goes anywhere else.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from urllib.parse import quote

import aiohttp
import msgspec
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from agents.tables import IDENTITIES, PROFILES, SEGMENT_SIZES, TRIGGER_STATS
from core.identity import NO_IDENTITY
from core.profile.document import profile_document
from core.replenishment import predict_replenishment
from core.triggers.attribution import merge_stats
from core.uplift import kind_report
from schemas.codecs import encode_json
from schemas.conversions import KindStats
from streams import metrics
from streams.partitioning import owning_partition
from streams.runtime import Runtime
from streams.security import (
    ASSIGNMENT_HEADER,
    SIGNATURE_HEADER,
    assignment_tag,
    internal_signing_key,
    sign_request,
    sign_response,
    trusted_peer,
    verify_request,
    verify_response,
)
from streams.settings import Settings
from streams.state_store import PartitionStore

log = logging.getLogger(__name__)

# Key of an internal answer naming the customer a linked id belongs to, whose partition the answering worker
# does not hold: the asking worker reads that id next.
LINKED_TO = "linked_to"


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=encode_json(body), status=status, content_type="application/json", headers=headers)


class Api:
    """The views over one runtime's stores."""

    def __init__(self, runtime: Runtime, session: aiohttp.ClientSession) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.audience_policy = runtime.policy.audiences
        self.session = session  # for reads from the other workers
        self.signing_key = internal_signing_key(self.settings.api_token)
        self.trusted_peer_url = re.compile(self.settings.trusted_peer_url_pattern)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.prometheus_metrics),
            web.get("/segments", self.segments),
            web.get("/profiles/{customer_id}", self.profile),
            web.get("/internal/profiles/{customer_id}", self.internal_profile),
            web.get("/triggers/stats", self.trigger_stats),
            web.get("/internal/triggers/stats", self.internal_trigger_stats),
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

    def _store_of(self, key: str) -> PartitionStore | None:
        return self.runtime.stores.get(owning_partition(key.encode(), self.settings.topic_partitions))

    def _read_local(self, key: str) -> tuple[int, dict]:
        """What this worker's stores say of ``key``: ``(200, document)``; ``(200, {"linked_to": id})`` when the
        id is linked to a customer whose partition another worker holds; 404; or 503 when ``key``'s partition
        is not held here."""
        store = self._store_of(key)
        if store is None:
            return 503, {"error": "partition not held here"}
        identity = store.get(IDENTITIES, key.encode()) or NO_IDENTITY
        if identity.redirect_to is not None:
            key = identity.redirect_to
            store = self._store_of(key)
            if store is None:
                return 200, {LINKED_TO: key}
        profile = store.get(PROFILES, key.encode())
        if profile is None:
            return 404, {"error": "no profile"}
        document = profile_document(profile, now=time.time(), policy=self.runtime.policy.profile)
        catalog = self.audience_policy.definitions.consumables if self.audience_policy is not None else None
        if catalog is not None:
            # Expected next purchase per consumable (the customer's own cadence, else the catalog cycle).
            predictions = predict_replenishment(profile.product_purchases, catalog)
            document["replenishment"] = [msgspec.to_builtins(p) for p in predictions.values()]
        return 200, document

    async def _read(self, key: str) -> tuple[int, dict]:
        """``_read_local`` of the worker holding ``key``'s partition: this one, or the owner over a signed
        internal call (503 while the partition has no owner, or its owner is not trusted or not reachable)."""
        partition = owning_partition(key.encode(), self.settings.topic_partitions)
        if partition in self.runtime.stores:
            return self._read_local(key)
        owners = self.runtime.assignor.owners
        owner = owners.get(partition)
        if owner is None or owner == self.runtime.assignor.web_url:
            return 503, {"error": f"partition {partition} is not assigned yet"}
        if not trusted_peer(owner, self.trusted_peer_url, owners, self.runtime.assignor.web_url):
            log.warning("not forwarding to %r (partition %s): not a trusted peer URL", owner, partition)
            return 503, {"error": f"the owner of partition {partition} advertises an untrusted URL"}
        return await self._fetch_from_owner(owner, key, assignment_tag(owners))

    async def _signed_get(self, owner: str, path: str, assignment: str) -> tuple[int, bytes] | None:
        """``GET owner + path`` signed with the internal key; its status and body when the answer is signed
        by the owner too, else None (no answer, or not from a worker that knows the key)."""
        signature = sign_request(self.signing_key, path, assignment, time.time())
        headers = {SIGNATURE_HEADER: signature, ASSIGNMENT_HEADER: assignment}
        try:
            async with self.session.get(URL(owner + path, encoded=True), headers=headers, allow_redirects=False) as r:
                body = await r.read()
                status, answer_signature = r.status, r.headers.get(SIGNATURE_HEADER, "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("internal read %s from %s failed: %r", path, owner, exc)
            return None
        if not verify_response(self.signing_key, answer_signature, signature, status, body):
            log.warning("unsigned or wrongly signed answer %s from %s", status, owner)
            return None
        return status, body

    async def _fetch_from_owner(self, owner: str, key: str, assignment: str) -> tuple[int, dict]:
        answer = await self._signed_get(owner, f"/internal/profiles/{quote(key, safe='')}", assignment)
        if answer is None:
            return 503, {"error": "the partition's owner did not answer"}
        status, body = answer
        if status not in (200, 404):
            return 503, {"error": "the partition's owner cannot answer now"}
        return status, orjson.loads(body)

    async def profile(self, request: web.Request) -> web.Response:
        """A profile by its canonical id or by any id linked to it (anonymous id, earlier user id), answered by
        whichever worker is asked: it reads its own stores or asks the owner (never a redirect)."""
        if not self._authorised(request):
            return _json({"error": "missing or wrong bearer token"}, status=401)
        if not self.runtime.ready:  # restoring or rebalancing: a store may be half restored
            return _json({"error": "worker is restoring or rebalancing"}, status=503, headers={"Retry-After": "1"})
        requested = key = request.match_info["customer_id"]
        # The id's partition, then (a linked id held elsewhere) the customer's.
        for _ in range(2):
            status, document = await self._read(key)
            if status != 200 or LINKED_TO not in document:
                break
            key = document[LINKED_TO]
        else:
            status, document = 503, {"error": "the id's link is changing"}
        if status == 503:
            return _json(document, status=503, headers={"Retry-After": "1"})
        if status == 404:
            return _json({"error": f"no profile for id {requested!r}"}, status=404)
        if document.get("customer_id") != requested:  # asked by a linked id
            document["requested_id"] = requested
        return _json(document)

    async def internal_profile(self, request: web.Request) -> web.Response:
        """Another worker's read of an id in a partition this one holds: ``_read_local``, for a request signed
        with the internal key and routed by the same assignment; the answer is signed too."""
        signature = request.headers.get(SIGNATURE_HEADER, "")
        assignment = request.headers.get(ASSIGNMENT_HEADER, "")
        if not verify_request(self.signing_key, signature, request.raw_path, assignment, time.time()):
            return _json({"error": "missing or wrong signature"}, status=401)
        if not self.runtime.ready:
            status, document = 503, {"error": "worker is restoring or rebalancing"}
        elif assignment != assignment_tag(self.runtime.assignor.owners):
            status, document = 503, {"error": "routed by another group generation"}
        else:
            status, document = self._read_local(request.match_info["customer_id"])
        body = encode_json(document)
        headers = {SIGNATURE_HEADER: sign_response(self.signing_key, signature, status, body)}
        return web.Response(body=body, status=status, content_type="application/json", headers=headers)

    def _local_trigger_stats(self) -> tuple[list[int], dict[str, KindStats]]:
        """The partitions this worker holds and their trigger counters summed per kind."""
        stores = dict(self.runtime.stores)
        parts = ({kind.decode(): stats for kind, stats in store.items(TRIGGER_STATS)} for store in stores.values())
        return sorted(stores), merge_stats(parts)

    async def trigger_stats(self, request: web.Request) -> web.Response:
        """Per trigger kind, over every partition (this worker's and, over signed internal reads, the other
        workers'): sends, holdouts, each arm's conversion rate, the uplift with its 95 % interval, attributed
        revenue, and delivery, open and click rates per channel. ``complete`` is false while a partition has
        no owner or its owner did not answer (``missing_partitions``)."""
        if not self._authorised(request):
            return _json({"error": "missing or wrong bearer token"}, status=401)
        if not self.runtime.ready:  # restoring or rebalancing: a store's counters may be half restored
            return _json({"error": "worker is restoring or rebalancing"}, status=503, headers={"Retry-After": "1"})
        partitions, local = self._local_trigger_stats()
        counted = set(partitions)
        parts = [local]
        owners = self.runtime.assignor.owners
        assignment = assignment_tag(owners)
        peers = sorted({url for p, url in owners.items() if p not in counted and url != self.runtime.assignor.web_url})
        for peer in peers:
            if not trusted_peer(peer, self.trusted_peer_url, owners, self.runtime.assignor.web_url):
                log.warning("not reading trigger stats from %r: not a trusted peer URL", peer)
                continue
            answer = await self._signed_get(peer, "/internal/triggers/stats", assignment)
            if answer is None or answer[0] != 200:
                continue
            remote = msgspec.json.decode(answer[1], type=_PeerStats)
            fresh = set(remote.partitions) - counted  # a partition moving between workers is counted once
            if fresh != set(remote.partitions):
                continue  # overlapping answers come from a rebalance in flight: leave that worker out
            counted |= fresh
            parts.append(remote.kinds)
        total = merge_stats(parts)
        missing = sorted(set(range(self.settings.topic_partitions)) - counted)
        return _json(
            {
                "kinds": {kind: kind_report(stats) for kind, stats in sorted(total.items())},
                "counted_partitions": sorted(counted),
                "missing_partitions": missing,
                "complete": not missing,
            }
        )

    async def internal_trigger_stats(self, request: web.Request) -> web.Response:
        """Another worker's read of this worker's trigger counters (signed both ways, same assignment)."""
        signature = request.headers.get(SIGNATURE_HEADER, "")
        assignment = request.headers.get(ASSIGNMENT_HEADER, "")
        if not verify_request(self.signing_key, signature, request.raw_path, assignment, time.time()):
            return _json({"error": "missing or wrong signature"}, status=401)
        if not self.runtime.ready:
            status, document = 503, {"error": "worker is restoring or rebalancing"}
        elif assignment != assignment_tag(self.runtime.assignor.owners):
            status, document = 503, {"error": "routed by another group generation"}
        else:
            partitions, kinds = self._local_trigger_stats()
            status, document = 200, _PeerStats(partitions=partitions, kinds=kinds)
        body = encode_json(document)
        headers = {SIGNATURE_HEADER: sign_response(self.signing_key, signature, status, body)}
        return web.Response(body=body, status=status, content_type="application/json", headers=headers)


class _PeerStats(msgspec.Struct, frozen=True):
    """A worker's answer to ``/internal/triggers/stats``: the partitions it counted and their counters."""

    partitions: list[int]
    kinds: dict[str, KindStats]


def make_runner(application: web.Application, settings: Settings) -> web.AppRunner:
    """The runner of a streamcdp HTTP server: a connection that has not sent a complete request within
    ``web_idle_timeout_s`` (idle keep-alive, or a slow half-sent request) is closed."""
    return web.AppRunner(application, access_log=None, keepalive_timeout=settings.web_idle_timeout_s)


async def start_web(runtime: Runtime) -> web.AppRunner:
    """Serve the API on ``STREAMCDP_WEB_HOST:STREAMCDP_WEB_PORT``; the caller cleans the runner up (which
    closes the client session of internal calls too)."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=runtime.settings.peer_timeout_s))

    async def close_session(application: web.Application) -> None:
        await session.close()

    application = web.Application()
    application.add_routes(Api(runtime, session).routes())
    application.on_cleanup.append(close_session)
    runner = make_runner(application, runtime.settings)
    await runner.setup()
    await web.TCPSite(runner, runtime.settings.web_host, runtime.settings.web_port).start()
    return runner
