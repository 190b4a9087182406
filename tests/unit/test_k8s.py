"""deploy/k8s, checked without a cluster: every manifest against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields fail), and against the product itself (the
configuration loads, the commands parse, the probes ask the admin port the workers open)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from durable_ingest.cli import _parser
from foundation.config_load import load_settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VERSION = "1.31.0"


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def deployment(component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in by_kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


@pytest.mark.parametrize(
    "document", documents(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_every_manifest_is_valid_kubernetes(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, VERSION, strict=True)


def test_the_validator_refuses_a_broken_manifest() -> None:
    """The check can fail: an unknown field and a missing one are both refused."""
    broken = copy.deepcopy(deployment("sink"))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)
    del broken["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=False)


def test_the_configuration_loads_and_replicates_three_times(tmp_path: Path) -> None:
    (config,) = by_kind("ConfigMap")
    path = tmp_path / "ingest.toml"
    path.write_text(config["data"]["ingest.toml"])
    settings = load_settings(path, env={"INGEST_CLICKHOUSE_PASSWORD": "from-the-secret"})
    assert settings.staging.replication_factor == 3
    assert settings.clickhouse.password is not None
    # No password setting in the ConfigMap: they come from the Secret.
    assert not re.search(r"^\s*\w*password\s*=", config["data"]["ingest.toml"], re.MULTILINE)


def test_the_secret_holds_no_value() -> None:
    (secret,) = by_kind("Secret")
    assert set(secret["stringData"].values()) == {""}
    assert "data" not in secret


@pytest.mark.parametrize("component", ["source", "sink"])
def test_workers_parse_probe_their_admin_port_and_run_as_10001(component: str) -> None:
    spec = deployment(component)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = _parser().parse_args(container["args"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert args.admin_port == int(env["ADMIN_PORT"]) == container["ports"][0]["containerPort"]
    assert args.admin_host == "0.0.0.0"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "admin"}
    assert spec["securityContext"]["runAsUser"] == 10001
    assert container["resources"]["requests"]["memory"]
    assert container["envFrom"] == [{"secretRef": {"name": "durable-ingest-secrets"}}]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/durable-ingest" in mounts  # where INGEST_CONFIG points in the image


def test_one_source_process_at_a_time_and_scalable_sinks() -> None:
    """A source is one connection: one replica, replaced by Recreate (never two at once);
    sinks are a group and scale."""
    source = deployment("source")["spec"]
    assert source["replicas"] == 1 and source["strategy"]["type"] == "Recreate"
    assert deployment("sink")["spec"]["replicas"] >= 2
    grace = {
        c: deployment(c)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for c in ("source", "sink")
    }
    assert grace["source"] > 15 and grace["sink"] >= 60  # beyond shutdown_timeout_s, a batch
