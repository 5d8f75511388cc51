"""``streamcdp senders simulate``: a stand-in for the outbound senders, to measure triggers end to end.

It subscribes to every ``triggers.<channel>`` topic and ``triggers.holdout`` (committed records only) as a
real email / SMS / push sender would, handles each ``trigger_id`` once (a bounded memory of recent ids),
and answers with what the customer does (``offline.responses.respond``: deliveries, opens and clicks
carrying the ``trigger_id``, and orders with each kind's configured true effect). The answers are checked
against the event contract and produced to the inbound topics exactly like ``streamcdp produce``
(``streams.produce.route_payload``). It stops after ``--idle`` seconds without a trigger, or after
``--max-messages`` triggers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from offline.responses import ResponseModel, TrueEffect, parse_effects, respond
from schemas.topics import TopicNames
from schemas.validation import ContractLimits
from streams.produce import Rejected, route_payload
from streams.settings import Settings
from streams.stage_config import contract_limits
from streams.topics import ensure_topics, topic_names

log = logging.getLogger(__name__)

MAX_REMEMBERED_TRIGGERS = 100_000


@dataclass
class SimulationSummary:
    """What the simulator saw and answered: triggers by arm, answers by event name, rejected answers."""

    triggers: Counter = field(default_factory=Counter)  # "treatment" / "holdout"
    duplicates: int = 0
    answers: Counter = field(default_factory=Counter)  # event name → count
    rejected: int = 0

    def line(self) -> str:
        arms = ", ".join(f"{arm} {count}" for arm, count in sorted(self.triggers.items())) or "none"
        answers = ", ".join(f"{name} {count}" for name, count in sorted(self.answers.items())) or "none"
        return f"triggers: {arms} (duplicates {self.duplicates}); answers: {answers}; rejected {self.rejected}"


class SeenTriggers:
    """The most recent ``capacity`` trigger ids (senders deduplicate on ``trigger_id``)."""

    def __init__(self, capacity: int = MAX_REMEMBERED_TRIGGERS) -> None:
        self.capacity = capacity
        self.ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, trigger_id: str) -> bool:
        if trigger_id in self.ids:
            return False
        self.ids[trigger_id] = None
        if len(self.ids) > self.capacity:
            self.ids.popitem(last=False)
        return True


async def simulate_senders(
    settings: Settings,
    model: ResponseModel,
    *,
    idle_s: float = 30.0,
    max_messages: int = 0,
    group_id: str = "streamcdp-sender-simulator",
    stop: asyncio.Event | None = None,
    on_answer: Callable[[dict, dict], None] | None = None,
) -> SimulationSummary:
    """Consume the trigger topics and produce the customers' answers until idle for ``idle_s`` seconds,
    ``max_messages`` triggers were handled (0: no limit) or ``stop`` is set; ``on_answer(trigger, payload)``
    is called for each answer produced (the demo prints them)."""
    names: TopicNames = topic_names(settings)
    limits = contract_limits(settings)
    consumer = AIOKafkaConsumer(
        *names.all_triggers,
        bootstrap_servers=settings.broker_bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        isolation_level="read_committed",  # only triggers of committed transactions are ever sent
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker_bootstrap, linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    summary = SimulationSummary()
    replier = _Replier(producer, model, names, limits, summary, on_answer)
    seen = SeenTriggers()
    handled = 0
    last_trigger = time.monotonic()
    try:
        while not (stop is not None and stop.is_set()):
            if max_messages and handled >= max_messages:
                break
            if time.monotonic() - last_trigger > idle_s:
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    last_trigger = time.monotonic()
                    trigger = orjson.loads(record.value)
                    if not seen.first_time(str(trigger.get("trigger_id"))):
                        summary.duplicates += 1
                        continue
                    handled += 1
                    summary.triggers[trigger.get("treatment") or "treatment"] += 1
                    await replier.answer(trigger)
            await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return summary


@dataclass
class _Replier:
    """Produces the answers to one trigger, checked against the contract, to the inbound topics."""

    producer: AIOKafkaProducer
    model: ResponseModel
    names: TopicNames
    limits: ContractLimits
    summary: SimulationSummary
    on_answer: Callable[[dict, dict], None] | None

    async def answer(self, trigger: dict) -> None:
        now = time.time()
        for payload in respond(trigger, self.model, now=now):
            value = orjson.dumps(payload)
            routed = route_payload(payload, value, topics=self.names, now=now, limits=self.limits)
            if isinstance(routed, Rejected):
                self.summary.rejected += 1
                log.warning("answer rejected by the contract: %s: %s", routed.reason, routed.detail)
                continue
            await self.producer.send(routed.topic, value=routed.value, key=routed.key)
            self.summary.answers[payload["event"]] += 1
            if self.on_answer is not None:
                self.on_answer(trigger, payload)


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    ensure_topics(settings)
    model = ResponseModel(
        seed=args.seed,
        effects=parse_effects(args.effect or ""),
        default_effect=TrueEffect(treatment=args.default_treatment, holdout=args.default_holdout),
    )
    summary = asyncio.run(
        simulate_senders(settings, model, idle_s=args.idle, max_messages=args.max_messages, group_id=args.group)
    )
    print(summary.line())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``senders simulate``."""
    parser = subparsers.add_parser("senders", help="simulated outbound senders (deliveries, opens, clicks, orders)")
    actions = parser.add_subparsers(dest="senders_action", required=True)
    simulate = actions.add_parser(
        "simulate",
        help="consume triggers.* and answer with Message Delivered/Opened/Clicked and orders",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument("--seed", type=int, default=1, help="seed of the customers' answers and habits")
    simulate.add_argument(
        "--effect",
        help="true conversion probabilities per kind: kind=treatment:holdout[,kind=...] "
        "(e.g. cart_abandonment=0.30:0.18)",
    )
    simulate.add_argument("--default-treatment", type=float, default=0.25, help="for kinds without --effect")
    simulate.add_argument("--default-holdout", type=float, default=0.15, help="for kinds without --effect")
    simulate.add_argument("--idle", type=float, default=30.0, help="stop after this many seconds without a trigger")
    simulate.add_argument("--max-messages", type=int, default=0, help="stop after this many triggers (0: no limit)")
    simulate.add_argument("--group", default="streamcdp-sender-simulator", help="the consumer group")
    simulate.set_defaults(handler=_cmd_simulate)
