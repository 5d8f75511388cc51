"""The Kubernetes manifests: rendered by kustomize, valid against the Kubernetes schemas (and the
Prometheus operator's CRD schemas), clean for checkov, and shaped as the worker needs."""

from __future__ import annotations

import json

import pytest
import yaml
from deploy_tools import OVERLAYS, Tools, run

KUBERNETES_VERSION = "1.32"
OPERATOR_KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}
# Run with the tools' Python (jsonschema): every error of a document against a schema, exit 1 if any. The
# schema itself is not checked: the CRDs' patterns are Go regular expressions (e.g. a late "(?i)").
VALIDATE_JSON = """
import json, sys
from jsonschema import Draft7Validator
schema, document = (json.load(open(path)) for path in sys.argv[1:3])
errors = [f"{list(error.absolute_path)}: {error.message}" for error in Draft7Validator(schema).iter_errors(document)]
print("\\n".join(errors))
sys.exit(1 if errors else 0)
"""


def by_kind(documents: list[dict], kind: str) -> list[dict]:
    return [doc for doc in documents if doc["kind"] == kind]


def settings_of(documents: list[dict]) -> dict[str, str]:
    (config_map,) = [
        doc for doc in by_kind(documents, "ConfigMap") if doc["metadata"]["name"].startswith("streamcdp-settings")
    ]
    return config_map["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_resources_match_the_kubernetes_schemas(tools: Tools, rendered, overlay: str) -> None:
    path, documents = rendered[overlay]
    result = run([tools.venv_bin("kubernetes-validate"), "--strict", "--kubernetes-version", KUBERNETES_VERSION, path])
    core = [doc for doc in documents if doc["kind"] not in OPERATOR_KINDS]
    assert result.stdout.count("passed for resource") == len(core), result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_resources_match_their_crd_schemas(tools: Tools, rendered, overlay: str, tmp_path) -> None:
    _, documents = rendered[overlay]
    checked = 0
    for kind, plural in OPERATOR_KINDS.items():
        crd = yaml.safe_load(tools.crd(plural).read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        for number, document in enumerate(by_kind(documents, kind)):
            schema_file = tmp_path / f"{plural}.schema.json"
            schema_file.write_text(json.dumps(version["schema"]["openAPIV3Schema"]))
            document_file = tmp_path / f"{plural}-{number}.json"
            document_file.write_text(json.dumps(document))
            run([tools.python, "-c", VALIDATE_JSON, schema_file, document_file])
            checked += 1
    assert checked == 3  # two ServiceMonitors and the PrometheusRule


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_finds_nothing_unjustified(tools: Tools, rendered, overlay: str) -> None:
    path, _ = rendered[overlay]
    result = run(
        [
            tools.venv_bin("checkov"),
            "-f",
            path,
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "-o",
            "json",
        ],
        env={"BC_SKIP_MAPPING": "TRUE", "PATH": "/usr/bin:/bin"},
    )
    summary = json.loads(result.stdout)["summary"]
    assert summary["failed"] == 0 and summary["passed"] > 100, summary


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_are_a_statefulset_with_volumes_probes_and_a_pod_dns_url(rendered, overlay: str) -> None:
    _, documents = rendered[overlay]
    (workers,) = by_kind(documents, "StatefulSet")
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    assert workers["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert {"name": "data", "mountPath": "/var/lib/streamcdp"} in container["volumeMounts"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {item["name"]: item for item in container["env"]}
    assert env["STREAMCDP_ADVERTISED_URL"]["value"].startswith(
        f"http://$(POD_NAME).{workers['spec']['serviceName']}.$(POD_NAMESPACE).svc"
    )
    assert env["STREAMCDP_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"].startswith("streamcdp-secrets")
    assert env["STREAMCDP_PII_HASH_KEY"]["valueFrom"]["secretKeyRef"]["name"].startswith("streamcdp-secrets")
    (headless,) = [s for s in by_kind(documents, "Service") if s["metadata"]["name"] == workers["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["memory"]
    assert by_kind(documents, "PodDisruptionBudget")[0]["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_replicas_fit_the_partition_count(rendered, overlay: str) -> None:
    """Co-partitioning gives each partition to one worker: replicas beyond the partition count would idle."""
    _, documents = rendered[overlay]
    (workers,) = by_kind(documents, "StatefulSet")
    settings = settings_of(documents)
    assert 1 <= workers["spec"]["replicas"] <= int(settings["STREAMCDP_TOPIC_PARTITIONS"])
    assert int(settings["STREAMCDP_TOPIC_MIN_INSYNC_REPLICAS"]) <= int(settings["STREAMCDP_TOPIC_REPLICATION_FACTOR"])


def test_prod_takes_its_secret_from_the_cluster_and_dev_generates_one(rendered) -> None:
    assert by_kind(rendered["prod"][1], "Secret") == []
    (secret,) = by_kind(rendered["dev"][1], "Secret")
    assert set(secret["data"]) == {"api-token", "pii-hash-key", "write-keys"}


def test_collector_scales_with_an_hpa(rendered) -> None:
    _, documents = rendered["prod"]
    (hpa,) = by_kind(documents, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "streamcdp-collector"
    collector = [d for d in by_kind(documents, "Deployment") if d["metadata"]["name"] == "streamcdp-collector"]
    assert collector[0]["spec"]["template"]["spec"]["containers"][0]["args"] == ["collect"]
