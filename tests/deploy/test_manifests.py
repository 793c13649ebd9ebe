"""Kubernetes manifests and the Compose file, validated offline against their real schemas.

- Kubernetes kinds: the official OpenAPI-derived JSON schemas bundled by
  `kubernetes-validate` (PyPI), strict (unknown fields are errors), Kubernetes 1.33.
- ServiceMonitor: the prometheus-operator CRD's own openAPIV3Schema (v0.85.0, from the Go
  module proxy; `make deploy-schemas`).
- docker-compose.yml: the Compose Specification JSON schema (compose-go v2.16.2, idem).
Beyond the schemas: every container runs a command the CLI has, every file a service
mounts exists, and every process runs as a non-root user.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
SCHEMAS = ROOT / ".cache" / "deploy-schemas"
KUBERNETES_VERSION = "1.33.0"
CIVICSTREAM = Path(sys.executable).parent / "civicstream"


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in manifests()
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]


def schema_file(name: str) -> Path:
    path = SCHEMAS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make deploy-schemas` (make test does)")
    return path


@pytest.mark.parametrize(
    "document",
    [doc for doc in manifests() if doc["apiVersion"] != "monitoring.coreos.com/v1"],
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}",
)
def test_every_kubernetes_manifest_is_valid_for_kubernetes(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_service_monitor_is_valid_for_the_prometheus_operator_crd() -> None:
    crd = yaml.safe_load(schema_file("monitoring.coreos.com_servicemonitors.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    monitors = [doc for doc in manifests() if doc["kind"] == "ServiceMonitor"]
    assert monitors
    for monitor in monitors:
        jsonschema.validate(monitor, schema)


def test_the_service_monitor_scrapes_ports_the_services_have() -> None:
    services = {doc["metadata"]["name"]: doc for doc in manifests() if doc["kind"] == "Service"}
    (monitor,) = [doc for doc in manifests() if doc["kind"] == "ServiceMonitor"]
    (selector,) = monitor["spec"]["selector"]["matchExpressions"]
    scraped = [services[name] for name in selector["values"]]
    ports = {port["name"] for service in scraped for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports


def test_the_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_every_pod_runs_unprivileged_on_a_read_only_root() -> None:
    for name, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name


def test_every_workload_has_a_disruption_budget_or_is_a_single_writer() -> None:
    budgets = {
        doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for doc in manifests()
        if doc["kind"] == "PodDisruptionBudget"
    }
    assert {"worker", "api"} <= budgets


def civicstream_commands() -> set[str]:
    commands = set()
    for _, spec in pod_specs():
        commands |= {container["args"][0] for container in spec["containers"]}
    compose = yaml.safe_load(COMPOSE.read_text())
    for service in compose["services"].values():
        if service.get("image", "").startswith("civicstream:"):
            commands.add(service["command"][0])
    return commands


@pytest.mark.parametrize("command", sorted(civicstream_commands()))
def test_every_container_runs_a_command_the_cli_has(command: str) -> None:
    result = subprocess.run(
        [str(CIVICSTREAM), command, "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_compose_file_is_valid_for_the_compose_specification() -> None:
    schema = json.loads(schema_file("compose-spec.json").read_text())
    jsonschema.validate(yaml.safe_load(COMPOSE.read_text()), schema)


def test_every_file_the_compose_services_mount_exists() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts {source}"
        build = service.get("build")
        if build:
            context = COMPOSE.parent / build["context"]
            assert (context / build["dockerfile"]).is_file(), name


def test_the_compose_prometheus_config_is_valid_and_keeps_the_alerting_job_names() -> None:
    config = COMPOSE.parent / "prometheus.yml"
    result = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    demo = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert {job["job_name"] for job in demo["scrape_configs"]} <= jobs


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_write_and_read_paths_use_separate_credentials() -> None:
    """Each Kafka client logs in as its own user with a password file from the Secret; the
    sink writes the store as the writer, the API reads it as the reader and has no Kafka
    credentials at all."""
    containers = {name: spec["containers"][0] for name, spec in pod_specs()}
    volumes = {name: {v["name"]: v for v in spec["volumes"]} for name, spec in pod_specs()}
    users = {}
    for name in ("worker", "sink", "archive"):
        env = _env(containers[name])
        users[name] = env["CIVIC_KAFKA_SASL_USERNAME"]
        assert "CIVIC_KAFKA_SASL_PASSWORD" not in env, name  # a file, not the environment
        secret = volumes[name]["kafka-credentials"]["secret"]
        assert secret["secretName"] == "civicstream-credentials"
        assert [item["path"] for item in secret["items"]] == ["password"]
        mounted = {m["name"]: m["mountPath"] for m in containers[name]["volumeMounts"]}
        assert env["CIVIC_KAFKA_SASL_PASSWORD_FILE"].startswith(mounted["kafka-credentials"])
    assert len(set(users.values())) == 3
    api = _env(containers["api"])
    assert not any(key.startswith("CIVIC_KAFKA_SASL") for key in api)
    assert "kafka-credentials" not in volumes["api"]
    reader = api["CIVIC_STORE_URL"]["secretKeyRef"]["key"]
    writer = _env(containers["sink"])["CIVIC_STORE_URL"]["secretKeyRef"]["key"]
    assert (reader, writer) == ("CIVIC_STORE_URL_READER", "CIVIC_STORE_URL_WRITER")
    config = next(doc for doc in manifests() if doc["kind"] == "ConfigMap")["data"]
    assert config["CIVIC_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
