"""The compose file: valid against the Compose specification's JSON schema (from the compose-go module,
scripts/ensure_tools.sh) and wired as the README says (no container runtime is needed for either)."""

from __future__ import annotations

import yaml
from deploy_tools import DEPLOY, Tools, run

COMPOSE = DEPLOY / "compose" / "compose.yaml"
VALIDATE = """
import json, sys, yaml
from jsonschema import Draft7Validator
schema = json.load(open(sys.argv[1]))
document = yaml.safe_load(open(sys.argv[2]))
errors = [f"{list(error.absolute_path)}: {error.message}" for error in Draft7Validator(schema).iter_errors(document)]
print("\\n".join(errors))
sys.exit(1 if errors else 0)
"""


def test_compose_file_matches_the_compose_specification(tools: Tools) -> None:
    run([tools.python, "-c", VALIDATE, tools.compose_schema, COMPOSE])


def test_compose_runs_the_whole_pipeline() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["topics"]["command"] == ["topics"]
    workers = [name for name, service in services.items() if service.get("command") == ["worker"]]
    assert len(workers) == 2
    for name in workers:
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["STREAMCDP_ADVERTISED_URL"] == f"http://{name}:6066"
    assert services["collector"]["command"] == ["collect"]
    assert services["lag-exporter"]["command"] == ["lag-exporter"]
    assert "../prometheus/rules:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
    assert any(volume.startswith("../grafana/streamcdp.json:") for volume in services["grafana"]["volumes"])
    for service in services.values():  # every port is published on the loopback interface only
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", []))
    scraped = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())["scrape_configs"]
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in scraped}
    assert targets["streamcdp-worker"] == [f"{name}:6066" for name in workers]
