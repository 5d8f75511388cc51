"""The Grafana dashboard: the committed JSON is exactly what the grafanalib generator produces, and every
panel queries metrics that exist."""

from __future__ import annotations

import json
import re
import runpy

from deploy_tools import DEPLOY

from streams import metrics

GENERATOR = DEPLOY / "grafana" / "dashboard.py"
DASHBOARD = DEPLOY / "grafana" / "streamcdp.json"
# Metrics that do not come from streams.metrics' registry: the lag exporter's (streams/lag_exporter.py).
EXPORTER_METRICS = {"streamcdp_group_lag_records", "streamcdp_group_lag_up"}


def test_committed_json_is_the_generator_output() -> None:
    generator = runpy.run_path(str(GENERATOR))
    assert DASHBOARD.read_text() == generator["render"](), "run deploy/grafana/dashboard.py and commit the JSON"


def test_every_panel_has_a_prometheus_query_on_a_known_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = {sample for family in metrics.registry.collect() for sample in _names(family)} | EXPORTER_METRICS
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert len(titles) == len(set(titles)) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:streamcdp|process)_[a-z_]+)\b", target["expr"]))
            assert names, target["expr"]
            assert names <= known, f"{panel['title']}: unknown metric(s) {names - known}"


def _names(family) -> set[str]:
    # A histogram is queried through its _bucket series, a counter through _total.
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}.get(family.type, ("",))
    return {family.name + suffix for suffix in suffixes}
