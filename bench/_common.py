"""Shared plumbing of the benchmarks: a private control system and measurement helpers."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tango_bokeh.sim import ControlSystem  # noqa: E402
from tango_bokeh_devices.catalog import DEMO, ServerSpec  # noqa: E402


def servers(*names: str) -> list[ServerSpec]:
    """The DEMO device servers called ``names`` (e.g. "SimEventStorm")."""
    return [s for s in DEMO if s.server in names]


@contextmanager
def control_system(specs: Sequence[ServerSpec]):
    """An embedded database with ``specs`` running; TANGO_HOST exported to this process."""
    with tempfile.TemporaryDirectory(prefix="tango-bench-") as state:
        system = ControlSystem(state, specs, export_env=True)
        system.start(timeout=120)
        try:
            yield system
        finally:
            system.stop()


def run_child(script: Path, *args: str, env: dict[str, str], timeout: float = 300) -> Any:
    """Run one measurement in a fresh process and return the JSON it prints last."""
    result = subprocess.run(
        [sys.executable, str(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
