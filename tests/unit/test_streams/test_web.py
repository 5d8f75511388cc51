"""The web API without a broker: profile reads answered by any worker through the owner's signed internal
endpoint (never a redirect), trust in owners, and the idle timeout that closes half-sent requests.

Two ``Api`` instances run on loopback over fake runtimes (``stores``, ``assignor.owners``): worker A holds
partition 0, worker B partition 1.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from agents.tables import IDENTITIES, PROFILES
from core.identity import KeyIdentity
from core.profile.apply import new_profile
from core.profile.policy import DEFAULT_POLICY
from streams.partitioning import owning_partition
from streams.security import (
    ASSIGNMENT_HEADER,
    SIGNATURE_HEADER,
    assignment_tag,
    internal_signing_key,
    sign_request,
)
from streams.settings import Settings
from streams.web import Api, make_runner

TOKEN = "unit-test-token"
PARTITIONS = 2


def ids_in(partition: int, count: int) -> list[str]:
    found = (f"id-{n}" for n in range(1000))
    return [i for i in found if owning_partition(i.encode(), PARTITIONS) == partition][:count]


A_USER, A_ANON = ids_in(0, 2)
B_USER, B_ANON, B_UNKNOWN = ids_in(1, 3)


@dataclass
class FakeStore:
    values: dict[tuple[Any, bytes], Any] = field(default_factory=dict)

    def get(self, table: Any, key: bytes) -> Any:
        return self.values.get((table, key))


@dataclass
class FakeRuntime:
    settings: Settings
    stores: dict[int, FakeStore]
    assignor: SimpleNamespace
    ready: bool = True
    policy: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(audiences=None, profile=DEFAULT_POLICY))


def worker_stores() -> tuple[dict[int, FakeStore], dict[int, FakeStore]]:
    a, b = FakeStore(), FakeStore()
    a.values[(PROFILES, A_USER.encode())] = new_profile(A_USER)
    a.values[(IDENTITIES, A_ANON.encode())] = KeyIdentity(redirect_to=B_USER)  # linked to B's customer
    b.values[(PROFILES, B_USER.encode())] = new_profile(B_USER)
    b.values[(IDENTITIES, B_ANON.encode())] = KeyIdentity(redirect_to=A_USER)  # linked to A's customer
    return {0: a}, {1: b}


async def serve(api: Api) -> tuple[web.AppRunner, str]:
    application = web.Application()
    application.add_routes(api.routes())
    runner = make_runner(application, api.settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def two_workers(pattern: str | None = None, b_token: str = TOKEN) -> tuple[list[web.AppRunner], str, str, Any]:
    """Workers A and B serving; returns the runners, A's and B's URLs and the client session."""
    overrides = {"trusted_peer_url_pattern": pattern} if pattern else {}
    settings_a = Settings(env="dev", api_token=TOKEN, topic_partitions=PARTITIONS, **overrides)
    settings_b = Settings(env="dev", api_token=b_token, topic_partitions=PARTITIONS)
    stores_a, stores_b = worker_stores()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
    runtime_a = FakeRuntime(settings_a, stores_a, SimpleNamespace(owners={}, web_url=""))
    runtime_b = FakeRuntime(settings_b, stores_b, SimpleNamespace(owners={}, web_url=""))
    runner_a, url_a = await serve(Api(runtime_a, session))  # type: ignore[arg-type]
    runner_b, url_b = await serve(Api(runtime_b, session))  # type: ignore[arg-type]
    owners = {0: url_a, 1: url_b}
    runtime_a.assignor.owners = runtime_b.assignor.owners = owners
    runtime_a.assignor.web_url, runtime_b.assignor.web_url = url_a, url_b
    return [runner_a, runner_b], url_a, url_b, session


async def get(session: aiohttp.ClientSession, url: str, token: str = TOKEN) -> tuple[int, dict, Any]:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False) as response:
        return response.status, await response.json(), response.headers


def run(scenario) -> Any:
    async def main() -> Any:
        runners, url_a, url_b, session = await two_workers(**scenario.kwargs)
        try:
            return await scenario(session, url_a, url_b)
        finally:
            await session.close()
            for runner in runners:
                await runner.cleanup()

    return asyncio.run(main())


def scenario(**kwargs: Any):
    def wrap(function):
        function.kwargs = kwargs
        return function

    return wrap


def test_any_worker_answers_every_read_itself() -> None:
    @scenario()
    async def reads(session, url_a, url_b):
        return {
            (asked, wanted): await get(session, f"{url}/profiles/{wanted}")
            for asked, url in (("A", url_a), ("B", url_b))
            for wanted in (A_USER, B_USER, A_ANON, B_ANON, B_UNKNOWN)
        }

    answers = run(reads)
    for (asked, wanted), (status, document, headers) in answers.items():
        assert "Location" not in headers, (asked, wanted)
        if wanted == B_UNKNOWN:
            assert status == 404 and wanted in document["error"], (asked, document)
            continue
        assert status == 200, (asked, wanted, document)
        customer = {A_ANON: B_USER, B_ANON: A_USER}.get(wanted, wanted)
        assert document["customer_id"] == customer
        assert document.get("requested_id") == (wanted if wanted != customer else None)


def test_reads_need_the_bearer_token_and_internal_reads_a_signature() -> None:
    @scenario()
    async def reads(session, url_a, url_b):
        return [
            await get(session, f"{url_a}/profiles/{B_USER}", token="wrong"),
            await get(session, f"{url_b}/internal/profiles/{B_USER}"),  # the bearer token is no signature
            await get(session, f"{url_b}/internal/profiles/{B_USER}", token=""),
        ]

    assert [status for status, *_ in run(reads)] == [401, 401, 401]


def test_an_untrusted_owner_url_is_not_asked() -> None:
    @scenario(pattern=r"http://10\.0\.0\.[0-9]+:6066")
    async def reads(session, url_a, url_b):
        return await get(session, f"{url_a}/profiles/{B_USER}"), await get(session, f"{url_a}/profiles/{A_USER}")

    (status, document, headers), (own_status, *_) = run(reads)
    assert status == 503 and "untrusted" in document["error"] and headers["Retry-After"] == "1"
    assert own_status == 200  # its own partitions are still served


def test_an_owner_without_the_shared_token_cannot_answer() -> None:
    @scenario(b_token="another-token")
    async def reads(session, url_a, url_b):
        return await get(session, f"{url_a}/profiles/{B_USER}")

    status, document, _ = run(reads)
    assert status == 503 and "did not answer" in document["error"]


def test_the_owner_refuses_a_caller_routing_by_another_assignment() -> None:
    @scenario()
    async def reads(session, url_a, url_b):
        path = f"/internal/profiles/{B_USER}"
        stale = assignment_tag({0: url_a})  # a generation in which A held everything
        headers = {
            SIGNATURE_HEADER: sign_request(internal_signing_key(TOKEN), path, stale, time.time()),
            ASSIGNMENT_HEADER: stale,
        }
        async with session.get(f"{url_b}{path}", headers=headers) as response:
            return response.status, await response.json()

    status, document = run(reads)
    assert status == 503 and "another group generation" in document["error"]


async def send_slowly(parts: list[bytes], pause_s: float) -> tuple[bytes, float]:
    """Send ``parts`` to a server with a 0.5 s idle timeout, ``pause_s`` apart; what came back until the
    server closed the connection, and how long after the last part that was."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    application = web.Application()
    application.add_routes([web.get("/healthz", healthz)])
    runner = make_runner(application, Settings(web_idle_timeout_s=0.5))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause_s)
        started = time.monotonic()
        received = await asyncio.wait_for(reader.read(), timeout=10)  # until EOF: the server closed
        writer.close()
        return received, time.monotonic() - started
    finally:
        await runner.cleanup()


def test_a_half_sent_request_is_closed_after_the_idle_timeout() -> None:
    received, waited = asyncio.run(send_slowly([b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "], 0.0))
    assert received == b""  # the headers never ended: closed without an answer
    assert 0.3 <= waited < 5, waited  # closed by the 0.5 s timeout, not at once


def test_a_request_completed_within_the_timeout_is_answered() -> None:
    parts = [b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"Connection: close\r\n\r\n"]
    received, _ = asyncio.run(send_slowly(parts, 0.2))
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b'{"status": "ok"}')
