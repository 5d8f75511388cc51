"""``streamcdp demo``: the whole pipeline on this machine, end to end, in about a minute.

Starts the project's own Kafka broker, one worker and the HTTP collector (free ports, state under
``var/demo/``), plays a generated omnichannel day of a pet shop and an outdoor store time-compressed into
live traffic (a sprinkle of corrupted messages included), prints every trigger as it arrives, answers them
with the sender simulator (``streams.senders``: deliveries, opens, clicks and orders, printed as they go),
prints a summary and the ``streamcdp report triggers`` table, and stops the collector, the worker and the
broker by pid — also on errors and Ctrl-C.

The browser and app calls (those with an ``anonymousId``: a device's tracker) go through ``streamcdp
collect`` with the official Segment Python SDK, as a retailer's trackers would; the server-side calls
(in-store orders, messaging) and the corrupted lines go straight to Kafka, as a CDP forwarder would.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml
from segment.analytics import Client

from core.triggers.rules import parse_window
from offline.generator import WorkloadConfig, generate_workload
from offline.responses import ResponseModel
from schemas.topics import CHANNELS
from streams import kafka_local
from streams.http_probe import http_get
from streams.produce import route_line
from streams.report_cli import ReportUnavailable, fetch_trigger_stats, format_trigger_report
from streams.senders import simulate_senders
from streams.settings import Settings
from streams.topics import topic_names

log = logging.getLogger(__name__)

DEMO_DIR = Path("var/demo")
DEMO_WRITE_KEY = "demo-web-key"


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCDP_")}
    for name in (
        "broker_url",
        "data_dir",
        "web_port",
        "api_token",
        "triggers_file",
        "trigger_scan_interval_s",
        "topic_partitions",
        "app_id",
        "pii_hash_key",
        "env",
        # the guardrails (scripts/demo.sh holds a share of customers out, so the report shows both arms)
        "trigger_customer_caps",
        "trigger_kind_caps",
        "trigger_channel_caps",
        "trigger_quiet_hours",
        "trigger_default_timezone",
        "trigger_consent",
        "trigger_holdout_shares",
        "trigger_control_group_share",
        "trigger_engagement_prior",
        "attribution_window_s",
    ):
        env[f"STREAMCDP_{name.upper()}"] = str(getattr(settings, name))
    env["STREAMCDP_LOG_LEVEL"] = "warning"
    return env


def _wait_ready(name: str, port: int, process: subprocess.Popen, log_path: Path, timeout_s: float = 120.0) -> None:
    """Until ``process`` (the worker or the collector) answers ``/readyz`` on ``port``; fail if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"the {name} exited with {process.returncode}; see {log_path}"
            raise RuntimeError(msg)
        if http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
            return
        time.sleep(0.3)
    msg = f"the {name} was not ready within {timeout_s:.0f}s; see {log_path}"
    raise RuntimeError(msg)


def _stop_process(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _format_trigger(trigger: dict) -> str:
    items = ", ".join(
        f"{item['quantity']}× {item.get('name') or item['product_id']}" for item in trigger.get("items", [])
    )
    # The payload's own currency; a trigger without items (cross-sell, win-back) has no amount to show.
    value = trigger.get("value", 0)
    money = f"{trigger.get('currency') or '':>3} {value / 100:>8.2f}" if items or value else " " * 12
    content = trigger.get("content", {}).get("template", "")
    extras = [f"offer {trigger['offer']['code']}"] if trigger.get("offer", {}).get("code") else []
    if trigger.get("recommendations"):
        extras.append(f"{len(trigger['recommendations'])} recommendation(s)")
    route = f"via {trigger['channel']:<8}" if trigger.get("treatment") != "holdout" else "held out    "
    return (
        f"  → {trigger['kind']:<24} {route} to {trigger['customer_id']:<14} "
        f"{money}  {content:<18} [{items[:50]}] {'; '.join(extras)}"
    )


def _print_answer(trigger: dict, answer: dict) -> None:
    """A simulated customer's answer to a trigger (deliveries are many: only opens, clicks and orders)."""
    if answer["event"] == "Message Delivered":
        return
    arm = " (holdout)" if trigger.get("treatment") == "holdout" else ""
    print(f"    ↳ {trigger['customer_id']:<14} {answer['event']:<16} {trigger['kind']}{arm}", flush=True)


def _collector_env(settings: Settings, port: int) -> dict[str, str]:
    return {
        **_worker_env(settings),
        "STREAMCDP_WRITE_KEYS": f"{DEMO_WRITE_KEY}:demo-web",
        "STREAMCDP_COLLECTOR_PORT": str(port),
    }


def _send_with_sdk(client: Client, line: bytes) -> bool:
    """A device's call sent with the Segment SDK (True), or False when it is not one (server-side or broken)."""
    try:
        payload = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(payload, dict) or not payload.get("anonymousId") or _timestamp_of(line) is None:
        return False
    common = {
        "context": payload.get("context") or {},
        "timestamp": datetime.fromtimestamp(_timestamp_of(line) or 0.0, tz=UTC),
        "message_id": payload.get("messageId"),
    }
    ids = {"user_id": payload.get("userId"), "anonymous_id": payload.get("anonymousId")}
    try:
        call = payload.get("type")
        if call == "track":
            client.track(event=payload.get("event"), properties=payload.get("properties") or {}, **ids, **common)
        elif call == "identify":
            client.identify(traits=payload.get("traits") or {}, **ids, **common)
        elif call in ("page", "screen"):
            send = client.page if call == "page" else client.screen
            send(name=payload.get("name"), properties=payload.get("properties") or {}, **ids, **common)
        else:
            return False
    # The SDK refuses what it cannot send (a RuntimeError for a message over its 32 KB limit): Kafka takes it.
    except (AssertionError, TypeError, ValueError, RuntimeError):
        return False
    return True


def _summary_line(trigger: dict) -> str:
    """The summary's line for a trigger: its kind and channel, or held out (on triggers.holdout: not sent)."""
    if trigger.get("treatment") == "holdout":
        return f"{trigger['kind']} held out"
    return f"{trigger['kind']} via {trigger['channel']}"


DEMO_MAX_WAIT_S = 8.0  # so that the days-long waits (a cross-sell 3 days after an order) show in the demo too


def compressed_triggers(source: Path, target: Path, factor: float) -> Path:
    """A copy of the trigger definitions with every ``wait.after`` multiplied by ``factor`` (a day played in
    seconds: a 30 minute cart delay becomes a second), at most ``DEMO_MAX_WAIT_S``, written to ``target``."""
    document = yaml.safe_load(source.read_text())
    for definition in document.get("triggers") or ():
        wait = definition.get("wait")
        if isinstance(wait, dict) and "after" in wait:
            seconds = min(max(parse_window(str(wait["after"])) * factor, 1.0), DEMO_MAX_WAIT_S)
            wait["after"] = f"{seconds:.0f}s"
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


async def _play_and_watch(
    settings: Settings, lines: list[bytes], seconds: float, linger_s: float, collector_url: str
) -> dict:
    """Send ``lines`` time-compressed into ``seconds`` of live traffic while printing triggers."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    names = topic_names(settings)
    trigger_topics = [names.triggers(channel) for channel in (*CHANNELS, "holdout")]
    consumer = AIOKafkaConsumer(
        *trigger_topics,
        names.deadletter,
        bootstrap_servers=settings.broker_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",  # triggers of committed transactions only (exactly_once)
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker_bootstrap, linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    counts: Counter = Counter()
    sent = via_collector = 0
    sdk = Client(DEMO_WRITE_KEY, host=collector_url, gzip=True, upload_interval=0.2, upload_size=100)
    stop_watching = asyncio.Event()

    async def watch() -> None:
        while not stop_watching.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    if record.topic == names.deadletter:
                        counts["dead-lettered"] += 1
                        continue
                    trigger = orjson.loads(record.value)
                    counts[_summary_line(trigger)] += 1
                    print(_format_trigger(trigger), flush=True)

    # The trigger watcher, and the sender simulator answering the same triggers as customers would.
    background = asyncio.gather(
        watch(),
        simulate_senders(
            settings,
            ResponseModel(),
            idle_s=float("inf"),
            group_id="streamcdp-demo-senders",
            stop=stop_watching,
            on_answer=_print_answer,
        ),
    )
    try:
        first_ts, last_ts = _time_span(lines)
        span = max(last_ts - first_ts, 1.0)
        started = time.time()
        for line in lines:
            original = _timestamp_of(line)
            due = started + ((original - first_ts) / span) * seconds if original is not None else time.time()
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            restamped = _restamp(line, time.time())
            if _send_with_sdk(sdk, restamped):
                via_collector += 1
            else:
                routed = route_line(restamped, topics=names, raw=True)
                await producer.send(routed.topic, value=routed.value, key=routed.key)
            sent += 1
        await producer.flush()
        await asyncio.to_thread(sdk.flush)
        print(f"\n  … all {sent} events sent; waiting {linger_s:.0f}s for the last carts to be abandoned\n", flush=True)
        await asyncio.sleep(linger_s)
    finally:
        stop_watching.set()
        _, simulated = await background
        await producer.stop()
        await consumer.stop()
        await asyncio.to_thread(sdk.join)
    counts.update({f"simulated {name}": n for name, n in simulated.answers.items()})
    return {"sent": sent, "via_collector": via_collector, "counts": counts}


def _timestamp_of(line: bytes) -> float | None:
    try:
        value = orjson.loads(line).get("timestamp")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    try:
        from schemas.validation import parse_timestamp

        return parse_timestamp(value)
    except Exception:  # noqa: BLE001  (a corrupted line keeps its place in time anyway)
        return None


def _time_span(lines: list[bytes]) -> tuple[float, float]:
    stamps = [stamp for stamp in (_timestamp_of(line) for line in lines) if stamp is not None]
    return min(stamps), max(stamps)


def _restamp(line: bytes, now: float) -> bytes:
    """Move a valid event to the present; corrupted lines are sent exactly as generated."""
    try:
        payload = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    if not isinstance(payload, dict) or _timestamp_of(line) is None:
        return line
    payload["timestamp"] = now
    return orjson.dumps(payload)


def run_demo(settings: Settings, *, customers: int, seconds: float, seed: int) -> int:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir(parents=True)
    kafka_port = kafka_local.free_port()
    settings = settings.model_copy(
        update={
            "kafka_port": kafka_port,
            "kafka_controller_port": kafka_local.free_port(),
            "kafka_run_dir": DEMO_DIR / "kafka",
            "broker_url": f"kafka://127.0.0.1:{kafka_port}",
            "data_dir": DEMO_DIR / "data",
            "web_port": kafka_local.free_port(),
            "app_id": "streamcdp-demo",
            "triggers_file": compressed_triggers(settings.triggers_file, DEMO_DIR / "triggers.yaml", seconds / 86400),
            "trigger_scan_interval_s": 0.5,
        }
    )
    workload = generate_workload(
        WorkloadConfig(start=time.time() - 86400, customers=customers, days=1.0, seed=seed, corrupt_fraction=0.01)
    )
    print(
        f"streamcdp demo: {len(workload.lines)} generated events of {customers} shoppers "
        f"(pet shop + outdoor store, web, app and in-store), {workload.truth['corrupted']} corrupted on purpose"
    )
    print(f"starting Kafka {settings.kafka_version} on 127.0.0.1:{kafka_port} …", flush=True)
    kafka_local.start(settings)
    worker_log = DEMO_DIR / "worker.log"
    worker: subprocess.Popen | None = None
    collector: subprocess.Popen | None = None
    collector_log = DEMO_DIR / "collector.log"
    collector_port = kafka_local.free_port()
    try:
        with worker_log.open("ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker"],
                env=_worker_env(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        print(f"starting a worker (pid {worker.pid}, log {worker_log}) …", flush=True)
        _wait_ready("worker", settings.web_port, worker, worker_log)
        with collector_log.open("ab") as out:
            collector = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "collect"],
                env=_collector_env(settings, collector_port),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        print(f"starting the HTTP collector (pid {collector.pid}, log {collector_log}) …", flush=True)
        _wait_ready("collector", collector_port, collector, collector_log, timeout_s=60.0)
        print(
            f"worker ready; API on http://127.0.0.1:{settings.web_port}. Collector on "
            f"http://127.0.0.1:{collector_port} (write key {DEMO_WRITE_KEY}): browsers and apps send through it "
            f"with the Segment SDK.\nPlaying one day in {seconds:.0f}s; triggers as they arrive:\n",
            flush=True,
        )
        result = asyncio.run(
            _play_and_watch(
                settings, workload.lines, seconds, DEMO_MAX_WAIT_S + 6, f"http://127.0.0.1:{collector_port}"
            )
        )
        _print_summary(settings, workload.truth, result)
    finally:
        if collector is not None:
            _stop_process(collector)
        if worker is not None:
            _stop_process(worker)
        kafka_local.stop(settings)
        print("collector, worker and Kafka stopped.")
    return 0


def _print_summary(settings: Settings, truth: dict, result: dict) -> None:
    counts: Counter = result["counts"]
    print("\nsummary")
    print(f"  events sent          {result['sent']} ({result['via_collector']} by the Segment SDK via the collector)")
    print(f"  dead-lettered        {counts.pop('dead-lettered', 0)} (corrupted on purpose: {truth['corrupted']})")
    for label, count in sorted(counts.items()):
        print(f"  {label:<20} {count}")
    buyers = sorted(
        (p for p in truth["profiles"] if p.get("orders") and not p.get("deleted")), key=lambda p: -p["revenue"]
    )[:1]
    for expected in buyers:
        status, body = http_get(
            f"http://127.0.0.1:{settings.web_port}/profiles/{expected['user_id']}", token=settings.api_token
        )
        if status == 200:
            profile = orjson.loads(body)
            print(
                f"  top buyer profile    {expected['user_id']}: {profile.get('orders')} orders, "
                f"€{profile.get('revenue', 0) / 100:.2f} (generator truth: {expected['orders']} orders, "
                f"€{expected['revenue'] / 100:.2f})"
            )
    time.sleep(2.0)  # the simulator's last answers are still being applied
    try:
        report = fetch_trigger_stats(f"http://127.0.0.1:{settings.web_port}", settings.api_token)
    except ReportUnavailable as exc:
        print(f"\n  trigger report unavailable: {exc}")
        return
    print("\nstreamcdp report triggers (answers by the sender simulator)")
    print(format_trigger_report(report))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run Kafka + a worker + synthetic shoppers and print triggers")
    parser.add_argument("--customers", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=30.0, help="wall time into which one day is compressed")
    parser.add_argument("--seed", type=int, default=7)
    parser.set_defaults(
        handler=lambda args, settings: run_demo(
            settings, customers=args.customers, seconds=args.seconds, seed=args.seed
        )
    )
