#!/usr/bin/env python3
"""The two quickstart commands: ``python3 dev.py demo`` and ``python3 dev.py test``.

Each one creates or updates the local virtual environment ``.venv`` (pinned
versions from ``constraints.txt``) when ``pyproject.toml`` or the constraints
changed, then runs the demo or the whole test suite inside it. Only the
Python standard library is used here, so a fresh machine needs nothing but
Python 3.11+. The test command also installs JupyterHub's proxy
(configurable-http-proxy, pinned by ``tests/jupyterhub/package-lock.json``)
into ``.venv/node`` when npm is there; without it the JupyterHub test skips.

``test`` runs two passes: the whole suite on PyTango's sqlite Tango database, then, if
that passed, the browser tests again on the C++ database server facilities run
(Debian's ``tango-db`` on MariaDB; :data:`FACILITY_PASS`). pytest options go to both.
Setting ``TANGO_BOKEH_TEST_DATABASE`` yourself runs one pass on that database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".tango-bokeh-installed"
NODE = VENV / "node"
NODE_SPEC = ROOT / "tests" / "jupyterhub"
EXTRAS = {"demo": "notebook,dashboard,archive", "test": "notebook,dashboard,archive,test"}
#: The switch of tests/conftest.py's ``control_system`` fixture.
DATABASE_ENV = "TANGO_BOKEH_TEST_DATABASE"
#: The second pass: the browser tests on the facility database. Tests marked ``facility``
#: or ``docker`` start their own MariaDB-backed database already (in the first pass).
FACILITY_PASS = ("-m", "browser and not facility and not docker")
#: pytest's exit code when the selection is empty (e.g. ``-k`` matched no browser test).
NO_TESTS_COLLECTED = 5


def _fingerprint(extras: str) -> str:
    digest = hashlib.sha256(extras.encode())
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_venv(extras: str) -> None:
    """Create ``.venv`` and install the project with ``extras``, unless already up to date."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script must run on any python3
        sys.exit(f"tango-bokeh needs Python 3.11 or newer, not {sys.version.split()[0]}")
    wanted = _fingerprint(extras)
    if STAMP.exists() and STAMP.read_text().split() and wanted in STAMP.read_text().split():
        return
    if not (BIN / "python").exists():
        print(f"Creating the virtual environment {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print("Installing tango-bokeh and its pinned dependencies ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    quiet = dict(os.environ, PYTHONWARNINGS="ignore")  # setuptools' editable-install banner
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True, env=quiet)
    subprocess.run(
        [*pip, "install", "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[{extras}]"],
        check=True,
        env=quiet,
    )
    # Remember every extras set installed with these pins (demo's set is a subset of test's).
    known = set(STAMP.read_text().split()) if STAMP.exists() else set()
    if extras == EXTRAS["test"]:
        known.add(_fingerprint(EXTRAS["demo"]))
    STAMP.write_text("\n".join(sorted({*known, wanted})) + "\n")


def ensure_node_tools() -> None:
    """Install the pinned Node.js tools of the tests into ``.venv/node``, unless up to date."""
    lock = NODE_SPEC / "package-lock.json"
    wanted = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = NODE / ".installed"
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: the JupyterHub test will be skipped", flush=True)
        return
    print("Installing the JupyterHub test's proxy (npm) ...", flush=True)
    NODE.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(NODE_SPEC / name, NODE / name)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE, check=True)
    stamp.write_text(wanted + "\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__.strip())
        print("\nusage: python3 dev.py demo [tango-bokeh demo options]")
        print("       python3 dev.py test [pytest options]")
        return 2
    command, rest = argv[0], argv[1:]
    ensure_venv(EXTRAS[command])
    if command == "test":
        ensure_node_tools()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    os.chdir(ROOT)
    if command == "demo":
        args = [str(BIN / "tango-bokeh"), "demo", *rest]
        os.execve(args[0], args, env)  # signals go straight to the demo
    pytest = [str(BIN / "python"), "-m", "pytest"]
    if DATABASE_ENV in os.environ:  # the caller chose the database: one pass, as asked
        os.execve(pytest[0], [*pytest, *rest], env)
    passes = [
        ("main pass: every test, on PyTango's sqlite Tango database", "sqlite", []),
        (
            "facility pass: the browser tests, on the C++ DataBaseds on MariaDB",
            "facility",
            list(FACILITY_PASS),
        ),
    ]
    for title, database, args in passes:
        print(f"\n===== dev.py test, {title} =====", flush=True)
        code = run_pass([*pytest, *args, *rest], {**env, DATABASE_ENV: database})
        if code not in (0, NO_TESTS_COLLECTED) or (code and database == "sqlite"):
            print(f"===== dev.py test: {title} failed (exit {code}) =====", flush=True)
            return code
    print("\n===== dev.py test: both passes passed =====", flush=True)
    return 0


def run_pass(args: list[str], env: dict[str, str]) -> int:
    """Run one pytest pass; Ctrl-C reaches pytest (same process group), we wait for it."""
    proc = subprocess.Popen(args, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue  # pytest got the same SIGINT and is finishing its clean-up


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
