"""docker/kubernetes/dashboards.yaml against Kubernetes' own schemas, and against the image.

kubernetes-validate ships the JSON schemas of every Kubernetes release (no cluster,
no network); ``strict`` refuses unknown fields, so a misspelt key fails here
instead of being ignored by the API server.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "docker" / "kubernetes" / "dashboards.yaml"
#: The oldest Kubernetes release still maintained when this was written, and the newest known.
VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]


def _documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_resource_is_valid_for_kubernetes(version: str):
    documents = _documents()
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "Ingress"]
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


def test_a_misspelt_key_would_be_caught():
    deployment = _documents()[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"path": "/"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def test_the_pods_run_the_serve_role_with_probes_it_answers():
    deployment, service, ingress = _documents()
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert container["command"] == ["tango-bokeh-entrypoint"] and container["args"] == ["serve"]
    assert (
        "COPY docker/entrypoint.sh /usr/local/bin/tango-bokeh-entrypoint"
        in (ROOT / "docker" / "Dockerfile").read_text()
    )
    # Probes: readiness on /healthz (Tango reachable), liveness on /alive (the process);
    # with a Host the server serves (it answers 421 to others).
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/alive"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert {"name": "Host", "value": "127.0.0.1:5006"} in container[probe]["httpGet"][
            "httpHeaders"
        ]
    assert "--allow-websocket-origin 127.0.0.1:5006" in entrypoint
    # Secrets where the entrypoint reads them; every env variable is one it uses.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["secrets"] == "/run/secrets"
    for env in container["env"]:
        assert env["name"] == "TANGO_HOST" or env["name"] in entrypoint, env["name"]
    # Affinity: the Service per client, the Ingress per browser cookie.
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert re.fullmatch(r"\d+", str(deployment["spec"]["replicas"]))
