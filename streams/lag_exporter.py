"""``streamcdp lag-exporter``: the workers' consumer-group lag as seen by the broker, for Prometheus.

A worker reports the lag of the partitions it holds (``streams.lag``), but a stopped, crashed or stuck
worker reports nothing at all, which is exactly when lag matters. This small process asks the broker at
every scrape for the group's committed offsets and the partitions' end offsets of every input topic
(inbound families and profile-commands), like kafka-lag-exporter or Burrow would, so "lag growing"
still fires when no worker is consuming. It serves ``/metrics`` on ``STREAMCDP_WEB_HOST:STREAMCDP_WEB_PORT``.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.logs import configure_logging
from streams.settings import Settings
from streams.topics import topic_names

log = logging.getLogger(__name__)


class GroupLagCollector(Collector):
    """Committed offsets versus end offsets of the workers' group, read from the broker per scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        names = topic_names(settings)
        self.topics = (*names.all_inbound, names.profile_commands)
        self._clients = None
        self._lock = threading.Lock()  # scrapes may overlap; the Kafka clients are not thread-safe

    def _connect(self):
        if self._clients is None:
            bootstrap = self.settings.broker_bootstrap
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamcdp-lag-exporter")
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="streamcdp-lag-exporter")
            self._clients = (admin, consumer)
        return self._clients

    def collect(self):
        group = self.settings.app_id
        lag = GaugeMetricFamily(
            "streamcdp_group_lag_records",
            "Records of an input partition not yet committed by the workers' consumer group (end - committed).",
            labels=["group", "topic", "partition"],
        )
        up = GaugeMetricFamily("streamcdp_group_lag_up", "1 when the broker answered the last lag query.")
        with self._lock:
            try:
                admin, consumer = self._connect()
                committed = admin.list_group_offsets(group).get(group, {})
                partitions = [
                    TopicPartition(topic, partition)
                    for topic in self.topics
                    for partition in sorted(consumer.partitions_for_topic(topic) or ())
                ]
                ends = consumer.end_offsets(partitions)
                starts = consumer.beginning_offsets(partitions)
            except Exception:  # a scrape must answer; the next one reconnects
                log.exception("lag query to the broker failed")
                self._close()
                up.add_metric([], 0.0)
                yield up
                return
        for tp in partitions:
            done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else starts[tp]
            lag.add_metric([group, tp.topic, str(tp.partition)], float(max(ends[tp] - done, 0)))
        up.add_metric([], 1.0)
        yield lag
        yield up

    def _close(self) -> None:
        if self._clients is not None:
            for client in self._clients:
                client.close()
            self._clients = None


def _run(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    registry = CollectorRegistry()
    registry.register(GroupLagCollector(settings))
    server, thread = start_http_server(settings.web_port, addr=settings.web_host, registry=registry)
    log.info("lag exporter of group %s on %s:%d", settings.app_id, settings.web_host, settings.web_port)
    try:
        while thread.is_alive():
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lag-exporter", help="serve the workers' consumer-group lag (from the broker) to Prometheus"
    )
    parser.set_defaults(handler=_run)
