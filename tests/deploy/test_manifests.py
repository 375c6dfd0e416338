"""deploy/: the Kubernetes manifests, compose file and Dockerfile carry the essentials.

Docker and a cluster do not run here; these checks parse the files instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from samplan.config_docs import env_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
PINNED_IMAGE = re.compile(r"^[\w.\-/:]+:(?!latest$)[\w.\-]*\d[\w.\-]*(@sha256:[0-9a-f]{64})?$"
                          r"|^[\w.\-/:]+@sha256:[0-9a-f]{64}$")


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _documents() if d["kind"] == kind]


def _named(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _kind(kind) if d["metadata"]["name"] == name)


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"])
            for d in _documents() if d["kind"] in ("Deployment", "Job")]


def _containers() -> list[tuple[str, dict[str, Any]]]:
    return [(name, c) for name, spec in _pod_specs() for c in spec["containers"]]


def test_every_manifest_parses_and_is_listed_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    kinds = {d["kind"] for d in _documents()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job",
            "ConfigMap", "Secret", "NetworkPolicy"} <= kinds
    assert {d["metadata"]["name"] for d in _kind("Deployment")} == {"samplan-api",
                                                                     "samplan-worker"}


def test_images_are_pinned() -> None:
    for name, container in _containers():
        assert PINNED_IMAGE.match(container["image"]), (name, container["image"])
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service, spec in compose["services"].items():
        image = spec.get("image") or compose["x-samplan"]["image"]
        assert PINNED_IMAGE.match(image), (service, image)


def test_roles_run_the_right_command() -> None:
    args = {name: c["args"] for name, c in _containers()}
    assert args["samplan-api"] == ["serve"]
    assert args["samplan-worker"] == ["worker"]
    assert next(v for k, v in args.items() if k.startswith("samplan-migrate")) == ["migrate"]


def test_the_api_has_liveness_readiness_and_startup_probes() -> None:
    api = _named("Deployment", "samplan-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert api["lifecycle"]["preStop"]  # drained before SIGTERM
    worker = _named("Deployment", "samplan-worker")["spec"]["template"]["spec"]["containers"][0]
    assert "livenessProbe" in worker


def test_every_container_has_requests_and_limits_and_runs_locked_down() -> None:
    for name, container in _containers():
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["capabilities"]["drop"] == ["ALL"], name
    for name, spec in _pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec.get("automountServiceAccountToken") is False, name


def test_graceful_shutdown_has_time() -> None:
    api = _named("Deployment", "samplan-api")["spec"]["template"]["spec"]
    config = _named("ConfigMap", "samplan-config")["data"]
    grace = float(config["SAMPLAN_SHUTDOWN_GRACE_SECONDS"])
    assert api["terminationGracePeriodSeconds"] > grace + 5  # preStop sleep 5


def test_service_hpa_and_pdb_point_at_the_api() -> None:
    api = _named("Deployment", "samplan-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = _named("Service", "samplan-api")
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in api["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    hpa = _named("HorizontalPodAutoscaler", "samplan-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "samplan-api"}
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = _named("PodDisruptionBudget", "samplan-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_network_policies_select_samplan_pods_and_deny_by_default() -> None:
    policies = _kind("NetworkPolicy")
    deny = next(p for p in policies if p["metadata"]["name"] == "samplan-default-deny")
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    api = next(p for p in policies if p["metadata"]["name"] == "samplan-api")
    assert api["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def _env_names_used() -> set[str]:
    names: set[str] = set()
    for _, container in _containers():
        names |= {e["name"] for e in container.get("env", [])}
    for config in _kind("ConfigMap"):
        names |= set(config.get("data", {}))
    for secret in _kind("Secret"):
        names |= set(secret.get("stringData", {})) | set(secret.get("data", {}))
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    names |= set(compose["x-samplan"]["environment"])
    for spec in compose["services"].values():
        environment = spec.get("environment") or {}
        names |= set(environment)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    names |= set(re.findall(r"\b(SAMPLAN_[A-Z_]+)=", dockerfile))
    return {n for n in names if n.startswith("SAMPLAN_")}


def test_every_samplan_variable_exists_in_settings() -> None:
    used = _env_names_used()
    assert used, "no SAMPLAN_* variables found"
    unknown = used - env_names()
    assert not unknown, f"not in Settings (typo, or a setting that was removed): {unknown}"


def test_secrets_are_in_the_secret_not_the_configmap() -> None:
    config = _named("ConfigMap", "samplan-config")["data"]
    secret = _named("Secret", "samplan-secrets")["stringData"]
    for name in ("SAMPLAN_DATABASE_URL", "SAMPLAN_WEBHOOK_SECRET_KEY", "SAMPLAN_METRICS_TOKEN"):
        assert name in secret
        assert name not in config


def test_the_production_configuration_is_accepted_by_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from samplan.settings import Settings

    values = {**_named("ConfigMap", "samplan-config")["data"],
              **_named("Secret", "samplan-secrets")["stringData"]}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.auth_enabled


def test_no_deployment_hands_out_wildcard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image listens on 0.0.0.0; its links follow the request, and outside a request
    (the worker) a configured base or localhost is used, never the wildcard (issue 14)."""
    from samplan.settings import Settings

    image = dict(re.findall(r"\b(SAMPLAN_[A-Z_]+)=(\S+)", (DEPLOY / "Dockerfile").read_text()))
    assert image["SAMPLAN_HOST"] == "0.0.0.0"
    for name, value in image.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SAMPLAN_PUBLIC_BASE_URL", raising=False)
    assert "0.0.0.0" not in Settings().base_url
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    api = compose["services"]["api"].get("environment") or compose["x-samplan"]["environment"]
    assert "SAMPLAN_PUBLIC_BASE_URL" not in api  # links follow the Host nginx passes on
    worker = compose["services"]["worker"]["environment"]
    assert worker["SAMPLAN_PUBLIC_BASE_URL"].startswith("http://localhost:")
    config = _named("ConfigMap", "samplan-config")["data"]
    assert config["SAMPLAN_PUBLIC_BASE_URL"].startswith("https://")


class TestDockerfile:
    text = (DEPLOY / "Dockerfile").read_text()

    def _instructions(self, keyword: str) -> list[str]:
        return [line.split(None, 1)[1] for line in self.text.splitlines()
                if line.upper().startswith(keyword + " ")]

    def test_it_is_multi_stage_with_a_pinned_base(self) -> None:
        bases = [f.split()[0] for f in self._instructions("FROM")]
        assert len(bases) >= 2
        for base in bases:
            assert PINNED_IMAGE.match(base), base
            assert not base.endswith((":latest", ":3", ":3.11", ":slim"))

    def test_the_final_stage_runs_as_a_non_root_user(self) -> None:
        final = self.text.rsplit("\nFROM ", 1)[1]
        users = [line.split(None, 1)[1] for line in final.splitlines()
                 if line.startswith("USER ")]
        assert users, "no USER in the final stage"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0")

    def test_it_has_a_healthcheck_on_healthz(self) -> None:
        healthchecks = self._instructions("HEALTHCHECK")
        assert healthchecks
        assert "/healthz" in self.text.split("HEALTHCHECK", 1)[1]

    def test_the_build_context_is_restricted(self) -> None:
        ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
        assert ignore.splitlines()[1] == "**" or "**" in ignore.splitlines()
        for copied in re.findall(r"^COPY (?!--)(\S+)", self.text, flags=re.M):
            assert f"!{copied.rstrip('/')}" in ignore.replace("/\n", "\n"), copied


def test_the_compose_file_has_every_role() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "api", "worker", "receiver", "lb"} <= set(services)
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["api"]["depends_on"]["migrate"]["condition"] == \
        "service_completed_successfully"
    assert services["migrate"]["command"] == ["migrate"]
