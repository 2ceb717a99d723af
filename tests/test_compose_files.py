"""The compose files, Dockerfiles and entrypoints hang together (no Docker engine needed).

tests/test_compose.py runs the stack for real when a Docker engine can be had;
these checks run everywhere and in a second.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tango_bokeh.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILES = [DOCKER / "compose.yaml", DOCKER / "compose.facility.yaml"]
OFFICIAL_BASES = {"python:3.11-slim", "debian:bookworm-slim"}
#: Roles each image's entrypoint runs (``case`` labels of its script).
ENTRYPOINTS = {
    "docker/Dockerfile": DOCKER / "entrypoint.sh",
    "docker/tango/Dockerfile": DOCKER / "tango" / "entrypoint.sh",
}
SCRIPTS = [
    DOCKER / "entrypoint.sh",
    DOCKER / "tango" / "entrypoint.sh",
    DOCKER / "nginx" / "entrypoint.sh",
    DOCKER / "secrets.sh",
    DOCKER / "local-bases.sh",
]


def _roles(script: Path) -> set[str]:
    return set(re.findall(r"^  ([a-z]+)\)$", script.read_text(), re.M))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.rglob("Dockerfile")), ids=str)
def test_dockerfiles_start_from_official_images_and_copy_what_exists(dockerfile: Path):
    text = dockerfile.read_text()
    assert set(re.findall(r"^FROM (\S+)", text, re.M)) <= OFFICIAL_BASES
    for source in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / source).exists(), source


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_service_is_built_here_runs_a_known_role_and_has_a_health_check(compose_file):
    compose = _load(compose_file)
    declared = set(compose.get("secrets", {}))
    for name, service in compose["services"].items():
        build = service["build"]
        assert (compose_file.parent / build["context"] / build["dockerfile"]).exists(), name
        script = ENTRYPOINTS.get(build["dockerfile"])
        if script is not None:
            assert service["command"][0] in _roles(script), (name, service["command"])
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert set(service.get("secrets", [])) <= declared, name
    dashboards = compose["services"]["dashboards"]
    assert "replicas" in dashboards["deploy"]
    assert dashboards["secrets"] == ["tango_bokeh_secret", "tango_bokeh_users"]
    assert compose["services"]["nginx"]["environment"]["TANGO_BOKEH_UPSTREAMS"] == "dashboards:5006"
    # Only nginx and JupyterLab are published; the replicas are reached through nginx only.
    published = {n for n, s in compose["services"].items() if s.get("ports")}
    assert published == {"nginx", "jupyterlab"}


def test_the_full_stack_waits_for_each_layer():
    services = _load(DOCKER / "compose.yaml")["services"]

    def needs(name: str) -> set[str]:
        return set(services[name].get("depends_on", {}))

    assert needs("tango-db") == {"mariadb"}
    assert needs("beamline") == {"tango-db"} and needs("tangotest") == {"tango-db"}
    assert needs("dashboards") == {"beamline", "tangotest"}
    assert needs("nginx") == {"dashboards"}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}).values():
            assert dependency == {"condition": "service_healthy"}, name


def test_the_serve_role_passes_only_options_serve_has():
    script = (DOCKER / "entrypoint.sh").read_text()
    serve = script[script.index("  serve)") : script.index("  sim)")]
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for option in set(re.findall(r"(--[a-z][a-z-]+)", serve)):
        assert option in help_text, f"tango-bokeh serve has no {option}"
    sim = script[script.index("  sim)") : script.index("  jupyterlab)")]
    help_text = CliRunner().invoke(main, ["sim", "--help"]).output
    for option in set(re.findall(r"(--[a-z][a-z-]+)", sim)):
        assert option in help_text, f"tango-bokeh sim has no {option}"


def test_the_image_builds_from_an_allow_listed_context():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # everything out (.venv, .git, ...), then what the images copy
    copied = set()
    for dockerfile in DOCKER.rglob("Dockerfile"):
        copied |= {
            s.split("/")[0] for s in re.findall(r"^COPY (\S+) ", dockerfile.read_text(), re.M)
        }
    assert copied <= {line.lstrip("!") for line in ignore if line.startswith("!")}


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if done.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_accepts_the_file(compose_file: Path, tmp_path: Path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("needs docker compose or docker-compose (.ci/run installs docker-compose)")
    for name in ("tango_bokeh_secret", "tango_bokeh_users", "tango_db_password", "jupyter_token"):
        (tmp_path / name).write_text("x\n")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "TANGO_BOKEH_SECRETS": str(tmp_path),
        "TANGO_HOST": "tango-db.example.org:10000",
        "TANGO_BOKEH_DASHBOARDS": str(ROOT / "dashboards"),
        "DASHBOARD_REPLICAS": "3",
    }
    done = subprocess.run([*cli, "-f", str(compose_file), "config"], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["services"]["dashboards"]["deploy"]["replicas"] == 3
    if compose_file.name == "compose.facility.yaml":
        # Without TANGO_HOST the facility file refuses to start, saying what to set.
        del env["TANGO_HOST"]
        done = subprocess.run([*cli, "-f", str(compose_file), "config"], capture_output=True,
                              text=True, timeout=60, env=env)  # fmt: skip
        assert done.returncode != 0 and "set TANGO_HOST" in done.stderr + done.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_pass_shellcheck(script: Path):
    if shutil.which("shellcheck") is None:
        pytest.skip("needs shellcheck (.ci/run installs it)")
    shell = "bash" if script.read_text().startswith("#!/usr/bin/env bash") else "sh"
    done = subprocess.run(["shellcheck", "-s", shell, str(script)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout
