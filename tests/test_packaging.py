"""Every package of the source tree is declared, so a non-editable install (the container) works."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "tango_bokeh").rglob("__init__.py")
    }
    assert found <= declared, f"add to [tool.setuptools] packages: {sorted(found - declared)}"
    assert config["package-dir"]["tango_bokeh_devices"] == "devices"


def test_every_pin_installs_on_the_oldest_python_the_project_promises():
    """A pin that needs a newer Python than ``requires-python`` breaks the quickstart there.

    (soupsieve 3.0+ needs Python 3.11.5, while Debian 12's python3 is 3.11.2.)
    Each installed pin's own Requires-Python is checked against the oldest
    Python ``pyproject.toml`` admits; a marker-guarded older pin must exist for
    any that fails.
    """
    from importlib.metadata import distributions

    from packaging.markers import Marker
    from packaging.specifiers import SpecifierSet

    promised = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    oldest = promised.removeprefix(">=").strip() + ".0"
    pins: dict[str, list[tuple[str, str]]] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" not in line:
            continue
        spec, _, marker = line.partition(";")
        name, version = (part.strip() for part in spec.split("=="))
        pins.setdefault(name.lower().replace("_", "-"), []).append((version, marker.strip()))
    old = {"python_full_version": oldest, "python_version": oldest.rsplit(".", 1)[0]}
    checked = 0
    for dist in distributions():
        name = dist.metadata["Name"].lower().replace("_", "-")
        needs = dist.metadata.get("Requires-Python")
        if name not in pins or not needs or SpecifierSet(needs).contains(oldest):
            continue
        checked += 1
        fallback = [v for v, m in pins[name] if m and Marker(m).evaluate(old)]
        assert fallback, (
            f"{name} {dist.version} needs Python {needs}, pyproject promises {promised}: "
            f'add a pin guarded by `; python_full_version < "..."` to constraints.txt'
        )
    assert pins, "constraints.txt has no pins"
