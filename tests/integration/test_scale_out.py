"""The profile stage scaled out over two worker processes of one deployment, through the real broker.

Worker A starts alone, worker B joins the same consumer group (its own web port and data directory): the
co-partitioning assignor splits the four partitions between them, and each ``/readyz`` lists its half.
A seeded workload is produced and drained; then every identified customer (and each linked anonymous id)
is asked of worker A. A answers every read itself with 200 and the profile, equal to the generator's truth:
from its own stores, or fetched from B over B's signed ``/internal/profiles`` endpoint — never a redirect
(reads here do not follow redirects, so a 307 would be seen), so the client's token goes nowhere else. B's
internal endpoint refuses a read that is not signed, and neither the changelog nor profile-commands holds
a raw email address or phone number.
Then B is stopped with SIGTERM: A takes all four partitions back, restores B's half from the changelog
topic, and answers every profile itself, still equal to the truth.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import orjson
import pytest
from conftest import Pipeline, WorkerProcess, produce_raw_lines, read_to_end, wait_until_drained
from test_identity_ground_truth import expected_document, observed_document
from trigger_files import NO_TRIGGERS

from offline.generator import Workload, WorkloadConfig, generate_workload
from streams.partitioning import owning_partition

pytestmark = pytest.mark.integration

PARTITIONS = 4
CUSTOMERS = 60
DAYS = 10.0
SETTINGS = dict(topic_partitions=PARTITIONS, triggers_file=NO_TRIGGERS)  # no reminders
ASSIGNMENT_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, redirects not followed."""

    url: str
    status: int
    location: str | None
    document: dict | None


def get_once(url: str, token: str) -> Answer:
    """``GET url`` without following a redirect (``streams.http_probe.http_get`` follows them, via urllib)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", parts.path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    document = orjson.loads(body) if response.status == 200 else None
    return Answer(url, response.status, response.getheader("Location"), document)


def ask_profile(worker: WorkerProcess, profile_id: str) -> Answer:
    """``GET /profiles/{id}`` of ``worker``, redirects not followed."""
    return get_once(f"{url_of(worker)}/profiles/{quote(profile_id, safe='')}", worker.api_token)


def url_of(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.web_port}"


def held_partitions(worker: WorkerProcess) -> set[int] | None:
    """The partitions ``worker``'s ``/readyz`` lists; None while it is not ready."""
    status, body = worker.http_get("/readyz")
    return set(orjson.loads(body)["partitions"]) if status == 200 else None


def wait_for_assignment(workers: list[WorkerProcess], timeout_s: float) -> list[set[int]]:
    """Wait until every worker is ready and together they hold each partition exactly once."""
    deadline = time.monotonic() + timeout_s
    held: list[set[int] | None] = []
    while time.monotonic() < deadline:
        held = [held_partitions(worker) for worker in workers]
        if all(h is not None for h in held):
            split = [h for h in held if h is not None]
            if sorted(p for h in split for p in h) == list(range(PARTITIONS)):
                return split
        time.sleep(0.3)
    logs = "\n".join(f"--- {worker.log_path.name}\n{worker.log_tail(30)}" for worker in workers)
    msg = f"partitions never split as {list(range(PARTITIONS))} within {timeout_s}s; last /readyz: {held}\n{logs}"
    raise AssertionError(msg)


def make_workload() -> Workload:
    config = WorkloadConfig(
        start=time.time() - (DAYS + 1) * 86400, customers=CUSTOMERS, days=DAYS, seed=21, deletion_rate=0.02
    )
    return generate_workload(config)


def routing_problems(worker: WorkerProcess, workload: Workload, owner_of: dict[int, str]) -> tuple[list[str], int]:
    """Ask ``worker`` for every identified customer (and each linked anonymous id); ``owner_of`` maps each
    partition to the URL of the worker that holds it. Returns the differences from the truth and how many
    customer reads ``worker`` answered with a profile another worker holds."""
    problems: list[str] = []
    forwarded = 0
    for customer in workload.truth["profiles"]:
        user_id = customer["user_id"]
        answer = ask_profile(worker, user_id)
        wanted_status = 404 if customer["deleted"] else 200
        if answer.status != wanted_status:
            problems.append(f"{user_id}: {answer.status} (Location {answer.location}), expected {wanted_status}")
            continue
        forwarded += owner_of[owning_partition(user_id.encode(), PARTITIONS)] != url_of(worker)
        if customer["deleted"]:
            continue
        actual = observed_document(answer.document)
        expected = expected_document(customer)
        if actual != expected:
            problems.append(f"{user_id}: {actual} != truth {expected}")
        for anonymous_id in customer["anonymous_ids"]:
            via = ask_profile(worker, anonymous_id)
            if via.status != 200 or via.document["customer_id"] != user_id:
                problems.append(f"{anonymous_id} of {user_id}: {via.status} (Location {via.location}), no profile")
            elif via.document.get("requested_id") != anonymous_id:
                problems.append(f"{anonymous_id} of {user_id}: requested_id {via.document.get('requested_id')!r}")
            elif observed_document(via.document) != actual:
                problems.append(f"{anonymous_id} of {user_id}: {observed_document(via.document)} != {actual}")
    return problems, forwarded


def assert_no_raw_contacts(pipeline: Pipeline, workload: Workload) -> None:
    """No email address or phone number of the generated customers is stored or forwarded raw: neither in
    the state changelog nor in profile-commands (ingestion hashes them before either is written)."""
    contacts = [
        value.encode()
        for line in workload.lines
        if line.startswith(b"{") and b'"traits"' in line
        for value in (orjson.loads(line).get("traits") or {}).values()
        if isinstance(value, str) and ("@" in value or value.startswith("+"))
    ]
    assert contacts, "the workload should carry emails and phone numbers"
    topics = [pipeline.topics.state_changelog(pipeline.settings.app_id), pipeline.topics.profile_commands]
    records = read_to_end(pipeline.kafka.bootstrap, topics)  # all of it: the workload is drained by now
    assert records, "nothing stored"
    leaked = {contact for contact in set(contacts) for record in records if contact in (record.value or b"")}
    assert not leaked, f"{len(leaked)} raw contacts in changelog or profile-commands, e.g. {sorted(leaked)[:3]}"


def assert_no_problems(problems: list[str], workers: list[WorkerProcess]) -> None:
    logs = "\n".join(f"--- {worker.log_path.name}\n{worker.log_tail(20)}" for worker in workers)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20]) + f"\n{logs}"


def test_two_workers_split_the_partitions_route_reads_and_one_takes_over(make_pipeline):
    workload = make_workload()
    pipeline: Pipeline = make_pipeline(**SETTINGS)
    worker_a = pipeline.worker
    started = time.monotonic()
    worker_b = pipeline.add_worker()
    held_a, held_b = wait_for_assignment([worker_a, worker_b], timeout_s=ASSIGNMENT_TIMEOUT_S)
    assert held_a and held_b, f"one worker holds nothing: A {held_a}, B {held_b}"
    split_s = time.monotonic() - started

    sent = produce_raw_lines(pipeline, workload.lines)
    drained_s = wait_until_drained(pipeline, timeout_s=DRAIN_TIMEOUT_S)
    owner_of = {p: url_of(worker_a if p in held_a else worker_b) for p in range(PARTITIONS)}
    problems, forwarded = routing_problems(worker_a, workload, owner_of)
    assert_no_problems(problems, [worker_a, worker_b])
    customers = len(workload.truth["profiles"])
    assert 0 < forwarded < customers, f"{forwarded} of {customers} reads forwarded: both workers should own some"
    assert_no_raw_contacts(pipeline, workload)
    unsigned = get_once(f"{url_of(worker_b)}/internal/profiles/{quote(workload.truth['profiles'][0]['user_id'])}", "")
    assert unsigned.status == 401, f"unsigned internal read answered {unsigned.status}"

    stopping = time.monotonic()
    worker_b.stop()
    assert worker_b.proc.returncode == 0, f"worker B exited with {worker_b.proc.returncode}\n{worker_b.log_tail()}"
    [held] = wait_for_assignment([worker_a], timeout_s=ASSIGNMENT_TIMEOUT_S)
    assert held == set(range(PARTITIONS))
    takeover_s = time.monotonic() - stopping
    alone = dict.fromkeys(range(PARTITIONS), url_of(worker_a))
    problems, forwarded_alone = routing_problems(worker_a, workload, alone)
    assert_no_problems(problems, [worker_a, worker_b])
    assert forwarded_alone == 0
    print(
        f"\nsplit A {sorted(held_a)} / B {sorted(held_b)} {split_s:.1f} s after B started; {sent} events "
        f"drained in {drained_s:.1f} s; {customers} customers read through A, {forwarded} of them fetched from B; "
        f"A alone with all partitions {takeover_s:.1f} s after B's SIGTERM"
    )
