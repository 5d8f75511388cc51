"""The worker's HTTP API: health, readiness, Prometheus metrics, and profile reads.

``GET /profiles/{id}`` needs ``Authorization: Bearer <STREAMCDP_API_TOKEN>`` and is routed by faust to
the worker that owns the id's partition, so any worker can be asked.
"""

from __future__ import annotations

import hmac

import msgspec
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.app import app, customer_to_profile, settings
from streams.codecs import decode_profile


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


@app.page("/profiles/{customer_id}")
class ProfileView(web.View):
    @app.table_route(table=customer_to_profile, match_info="customer_id")
    async def get(self, request: web.Request, customer_id: str) -> web.Response:
        if not _authorised(request):
            return self.json({"error": "missing or wrong bearer token"}, status=401)
        profile = decode_profile(customer_to_profile.get(customer_id.encode()))
        if profile is None:
            return self.json({"error": f"no profile for id {customer_id!r}"}, status=404)
        document = msgspec.to_builtins(profile)
        document.pop("applied_ids", None)
        return self.json(document)
