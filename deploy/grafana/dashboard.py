"""The streamcdp Grafana dashboard, built with grafanalib; ``streamcdp.json`` beside it is its output.

    python deploy/grafana/dashboard.py          # rewrite deploy/grafana/streamcdp.json
    python deploy/grafana/dashboard.py --check  # exit 1 when the committed JSON differs from this code

Edit this file, never the JSON: tests/unit/test_deploy/test_grafana_dashboard.py fails when they differ,
and tests/integration/test_prometheus.py runs every query below against a real Prometheus scraping a
worker. The metrics are those of ``streams/metrics.py`` (workers, job ``streamcdp-worker``) and of
``streamcdp lag-exporter`` (``streamcdp_group_lag_records``); RSS comes from prometheus-client's
``process_resident_memory_bytes``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, Target, Template, Templating, Time, TimeSeries

OUTPUT = Path(__file__).with_name("streamcdp.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WORKERS = 'job="streamcdp-worker"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]


def quantiles(histogram: str, by: str = "", levels: tuple[float, ...] = (0.5, 0.9, 0.99)) -> tuple[Query, ...]:
    """Quantiles (p50 / p90 / p99) of a histogram over every worker, one series per value of the label ``by``."""
    labels, legend = (f"le, {by}", f"{{{{{by}}}}} ") if by else ("le", "")
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket{{{WORKERS}}}[{RATE}])))",
            f"{legend}p{round(q * 100)}",
        )
        for q in levels
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "Events ingested by family",
        "Valid inbound events per second, by event family (streamcdp_events_ingested_total).",
        "ops",
        (Query(f"sum by (family) (rate(streamcdp_events_ingested_total{{{WORKERS}}}[{RATE}]))", "{{family}}"),),
    ),
    Panel(
        "Dead letters by reason",
        "Inbound messages sent to events.deadletter per second, by contract reason (processing_failed: a bug).",
        "ops",
        (Query(f"sum by (reason) (rate(streamcdp_events_deadlettered_total{{{WORKERS}}}[{RATE}]))", "{{reason}}"),),
    ),
    Panel(
        "Consumer lag per partition (records)",
        "Records not processed yet per input partition, as the owning worker sees it (high watermark - position).",
        "short",
        (
            Query(
                f"max by (topic, partition) (streamcdp_consumer_lag_records{{{WORKERS}}})",
                "{{topic}}/{{partition}}",
            ),
        ),
    ),
    Panel(
        "Consumer lag per partition (seconds)",
        "How old the last processed record of a partition that is behind is (0: caught up).",
        "s",
        (
            Query(
                f"max by (topic, partition) (streamcdp_consumer_lag_seconds{{{WORKERS}}})",
                "{{topic}}/{{partition}}",
            ),
        ),
    ),
    Panel(
        "Group lag from the broker (records)",
        "End offset - committed offset of the workers' group per topic (streamcdp lag-exporter): "
        "keeps counting when no worker runs.",
        "short",
        (Query("sum by (topic) (streamcdp_group_lag_records)", "{{topic}}"),),
    ),
    Panel(
        "Event → profile latency",
        "Event timestamp to profile updated, quantiles over all workers (streamcdp_event_lag_seconds).",
        "s",
        quantiles("streamcdp_event_lag_seconds"),
    ),
    Panel(
        "Flush duration",
        "One flush: outputs acknowledged, changelog written, RocksDB batch, offsets committed.",
        "s",
        quantiles("streamcdp_flush_seconds"),
    ),
    Panel(
        "Flush size",
        "Records one flush sent, by kind (outputs; changelog: changed state keys). A worker's memory peaks with its "
        "largest flushes; `STREAMCDP_FLUSH_MAX_DIRTY_KEYS` bounds the changelog's.",
        "short",
        quantiles("streamcdp_flush_records", by="kind", levels=(0.5, 0.99)),
    ),
    Panel(
        "GC pauses",
        "Share of the time the event loop stood still in Python's cyclic garbage collector, by generation (2: every "
        "object; streamcdp_gc_pause_seconds, whose buckets give the pauses' lengths): a long pause adds to the "
        "outputs' latency. 0 while no collection runs.",
        "percentunit",
        (
            Query(
                f"sum by (generation) (rate(streamcdp_gc_pause_seconds_sum{{{WORKERS}}}[{RATE}]))",
                "generation {{generation}}: share of time",
            ),
        ),
    ),
    Panel(
        "Triggers by kind and channel",
        "Triggers published per second, by kind and channel (the holdout channel logs the control group).",
        "ops",
        (
            Query(
                f"sum by (kind, channel) (rate(streamcdp_triggers_emitted_total{{{WORKERS}}}[{RATE}]))",
                "{{kind}} → {{channel}}",
            ),
        ),
    ),
    Panel(
        "Trigger outcomes",
        "Triggers decided, cancelled or expired per second, by outcome (sent, expired_stale, cancelled_exit, …; "
        "`streamcdp triggers outcomes` lists them).",
        "ops",
        (
            Query(
                f"sum by (outcome) (rate(streamcdp_trigger_decisions_total{{{WORKERS}}}[{RATE}]))",
                "{{outcome}}",
            ),
        ),
    ),
    Panel(
        "Segment entries and exits",
        "Segment changes published on segments.changes per second, entered vs exited; score crossings.",
        "ops",
        (
            Query(f"sum by (change) (rate(streamcdp_segment_changes_total{{{WORKERS}}}[{RATE}]))", "{{change}}"),
            Query(
                f'sum(rate(streamcdp_audience_changes_total{{{WORKERS},kind="score"}}[{RATE}]))',
                "score crossed",
            ),
        ),
    ),
    Panel(
        "Restores and rebalances",
        "Changelog records restored per second, and assignment changes (rebalances) per worker.",
        "short",
        (
            Query(
                f"sum by (instance) (rate(streamcdp_restored_records_total{{{WORKERS}}}[{RATE}]))",
                "restored records/s {{instance}}",
            ),
            Query(
                f"sum by (instance) (increase(streamcdp_assignment_changes_total{{{WORKERS}}}[{RATE}]))",
                "rebalances {{instance}}",
            ),
        ),
    ),
    Panel(
        "Memory (RSS) and state size per worker",
        "Resident memory of each worker process and the bytes of its RocksDB stores on disk.",
        "bytes",
        (
            Query(f"process_resident_memory_bytes{{{WORKERS}}}", "RSS {{instance}}"),
            Query(f"streamcdp_state_bytes{{{WORKERS}}}", "state {{instance}}"),
        ),
    ),
    Panel(
        "Readiness and overdue wake-ups",
        "1 when a worker's partitions are restored; how long its oldest pending wake-up is overdue (s).",
        "short",
        (
            Query(f"streamcdp_ready{{{WORKERS}}}", "ready {{instance}}"),
            Query(f"streamcdp_oldest_wakeup_age_seconds{{{WORKERS}}}", "wake-up age {{instance}}"),
        ),
    ),
)


def build() -> Dashboard:
    width, height = 12, 8
    panels = [
        TimeSeries(
            title=panel.title,
            description=panel.description,
            dataSource=DATASOURCE,
            unit=panel.unit,
            targets=[
                Target(expr=query.expr, legendFormat=query.legend, refId=chr(ord("A") + number), datasource=DATASOURCE)
                for number, query in enumerate(panel.queries)
            ],
            gridPos=GridPos(h=height, w=width, x=(index % 2) * width, y=(index // 2) * height),
        )
        for index, panel in enumerate(PANELS)
    ]
    return Dashboard(
        title="streamcdp pipeline",
        uid="streamcdp-pipeline",
        description="Ingest, lag, latency, flushes, triggers, segments, restores and resources of streamcdp workers.",
        tags=["streamcdp"],
        timezone="utc",
        time=Time("now-1h", "now"),
        refresh="30s",
        templating=Templating(
            [Template(name="datasource", label="Prometheus", query="prometheus", type="datasource", default="")]
        ),
        panels=panels,
    ).auto_panel_ids()


def render() -> str:
    return json.dumps(build().to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is not what {Path(__file__).name} generates; run it", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
