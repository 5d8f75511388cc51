"""A real Prometheus (Debian's package, installed by scripts/ensure_tools.sh when missing) scrapes a
running worker and the lag exporter while generated traffic flows; then every dashboard panel's query and
every alert expression is evaluated through Prometheus's HTTP API, and with the worker stopped while
traffic continues, "worker not ready" and "lag growing" fire.

The rules are loaded as shipped except their ``for:`` durations, set to 0 so an alert fires at the first
evaluation where its expression holds (the durations themselves are covered by the promtool unit tests).
Prometheus runs on 127.0.0.1 with a temporary storage directory and is stopped by pid.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from conftest import REPO, Pipeline, WorkerProcess, produce_raw_lines
from trigger_files import fast_triggers

from offline.generator import WorkloadConfig, generate_workload
from streams import kafka_local
from streams.http_probe import http_get

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "deploy" / "grafana" / "streamcdp.json"
RULES = REPO / "deploy" / "prometheus" / "rules" / "streamcdp.rules.yml"
RATE_INTERVAL = "15s"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval
TIMEOUT_S = 120.0


class Prometheus:
    """A Prometheus server process on a free 127.0.0.1 port; queried over its HTTP API."""

    def __init__(self, workdir: Path, worker_port: int, exporter_port: int) -> None:
        self.port = kafka_local.free_port()
        self.workdir = workdir
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                rule["for"] = "0s"
        (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [
                {"job_name": "streamcdp-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
                {"job_name": "streamcdp-lag", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary, "the prometheus server is missing after scripts/ensure_tools.sh"
        with (self.workdir / "prometheus.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200, "Prometheus ready", self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")[-3000:]

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout_s=10)
        answer = json.loads(body) if body else {"status": f"HTTP {status}"}
        assert answer.get("status") == "success", f"{url}: {answer}"
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def firing(self) -> set[str]:
        return {alert["labels"]["alertname"] for alert in self.api("alerts")["alerts"] if alert["state"] == "firing"}


class LagExporter:
    """``streamcdp lag-exporter`` for the pipeline's consumer group, stopped by pid."""

    def __init__(self, worker: WorkerProcess, log_path: Path) -> None:
        self.port = kafka_local.free_port()
        self.env = dict(worker.env, STREAMCDP_WEB_PORT=str(self.port))
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "lag-exporter"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for(
            lambda: b"streamcdp_group_lag_up 1.0" in http_get(f"http://127.0.0.1:{self.port}/metrics")[1],
            "lag exporter answering",
            lambda: self.log_path.read_text(errors="replace"),
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def wait_for(condition, what: str, log=lambda: "", timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    msg = f"{what}: not within {timeout_s:.0f}s\n{log()}"
    raise AssertionError(msg)


def panel_queries() -> dict[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        panel["title"]: [target["expr"].replace("$__rate_interval", RATE_INTERVAL) for target in panel["targets"]]
        for panel in dashboard["panels"]
    }


def alert_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"] if "alert" in rule}


def has_numbers(result: list[dict]) -> bool:
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


@pytest.fixture(scope="module")
def ops_tools() -> None:
    """promtool and the Prometheus server, from Debian's package when missing (CI: root, clean machine)."""
    subprocess.run(["bash", REPO / "scripts" / "ensure_tools.sh"], cwd=REPO, check=True, stdin=subprocess.DEVNULL)


def test_dashboard_and_alerts_against_a_real_prometheus(ops_tools, make_pipeline, tmp_path: Path) -> None:
    # Cart reminders 2 s after the last cart change, so triggers flow while Prometheus watches.
    triggers_file = fast_triggers(tmp_path, waits={"cart_abandonment": {"after": "2s"}})
    pipeline: Pipeline = make_pipeline(triggers_file=triggers_file)
    now = time.time()
    # Two days of history (with corrupted lines, so there are dead letters), and a live hour: the worker
    # measures event → profile latency only for events younger than an hour.
    history = generate_workload(
        WorkloadConfig(start=now - 2 * 86400 - 3600, customers=600, days=2.0, seed=14, corrupt_fraction=0.02)
    ).lines
    live = iter(generate_workload(WorkloadConfig(start=now - 3000, customers=3000, days=0.03, seed=15)).lines)
    exporter = LagExporter(pipeline.worker, tmp_path / "lag-exporter.log")
    prometheus = Prometheus(tmp_path, pipeline.worker.web_port, exporter.port)
    try:
        exporter.start()
        prometheus.start()
        # Traffic in slices while Prometheus scrapes every second.
        half = len(history) // 2
        for start in range(0, half, 500):
            produce_raw_lines(pipeline, history[start : start + 500])
            time.sleep(0.5)
        panels = panel_queries()
        empty: dict[str, list[str]] = {}

        def every_panel_has_data() -> bool:
            live_slice = [line for _, line in zip(range(20), live, strict=False)]
            if live_slice:
                produce_raw_lines(pipeline, live_slice)
            empty.clear()
            for title, queries in panels.items():
                if not any(has_numbers(prometheus.query(expr)) for expr in queries):
                    empty[title] = queries
            return not empty

        wait_for(every_panel_has_data, "every dashboard panel returns data", lambda: f"empty: {empty}")

        # Every query of every panel is valid PromQL (a panel's other series may be empty, e.g. no score crossed).
        for queries in panels.values():
            for expr in queries:
                prometheus.query(expr)
        # Every alert expression is valid and evaluates; none of the two under test fires while all is well.
        for expr in alert_expressions().values():
            prometheus.query(expr)
        assert not {"StreamcdpWorkerNotReady", "StreamcdpConsumerLagGrowing"} & prometheus.firing()

        # The worker stops; traffic goes on: the group's lag grows and the worker is gone.
        pipeline.worker.stop()
        rest = iter(range(half, len(history), 300))
        wanted = {"StreamcdpWorkerNotReady", "StreamcdpConsumerLagGrowing"}

        def alerts_fire() -> bool:
            start = next(rest, None)
            if start is not None:
                produce_raw_lines(pipeline, history[start : start + 300])
            return wanted <= prometheus.firing()

        wait_for(alerts_fire, f"{wanted} firing", lambda: f"firing: {prometheus.firing()}\n{prometheus.log()}")
        lag = prometheus.query("sum(streamcdp_group_lag_records)")
        assert float(lag[0]["value"][1]) > 1000
    finally:
        prometheus.stop()
        exporter.stop()
