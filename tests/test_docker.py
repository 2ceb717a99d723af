"""The container's command line is one the CLI accepts (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from tango_bokeh.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_entrypoint_options_exist_and_files_are_copied():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))
    assert entrypoint[:2] == ["tango-bokeh", "demo"]
    help_text = CliRunner().invoke(main, ["demo", "--help"]).output
    for option in (a for a in entrypoint if a.startswith("--")):
        assert option in help_text, f"tango-bokeh demo has no {option}"
    for copied in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (ROOT / copied).exists(), copied
