"""Importing the package costs nothing until something is used (no PyTango, no bokeh)."""

from __future__ import annotations

import subprocess
import sys

import tango_bokeh


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_name_parser_loads_neither_pytango_nor_bokeh():
    loaded = _loaded_after("from tango_bokeh.tango.names import parse_name\n"
                           "parse_name('sim/motor/1/Position')")  # fmt: skip
    assert "tango" not in loaded and "bokeh" not in loaded
    assert "tango_bokeh.notebook" not in loaded


def test_import_tango_bokeh_is_lazy_and_every_public_name_resolves():
    loaded = _loaded_after("import tango_bokeh")
    assert "tango" not in loaded and "bokeh" not in loaded
    for name in tango_bokeh.__all__:
        assert getattr(tango_bokeh, name) is not None, name
    assert set(tango_bokeh.__all__) <= set(dir(tango_bokeh))
