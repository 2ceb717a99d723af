"""Who may import whom (docs/architecture.md): data flows one way, PyTango stays in tango/.

Each module of the package belongs to a layer; a module may import its own
layer and the layers below it, never one above. The few imports that still
run against the layers are listed here by name, so that a new one fails this
test and removing one makes it fail too (until the list is brought up to date).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tango_bokeh"

#: Bottom to top. ``files`` (bounded reading of operator files) and ``threads`` (thread contracts)
#: are leaves anyone may use.
LAYERS = [
    ("files", "threads", "logs"),
    ("tango",),  # everything that knows PyTango, and the value types everyone shares
    ("ring", "history"),
    ("hub",),
    ("views",),
    ("session",),
    ("app", "cleanup", "internals"),  # internals: private bokeh API both front ends use
    ("monitor", "dashboard", "sim"),
    ("notebook", "magic"),
    ("cli", "__init__"),
]
#: The pure types of tango/ that the upper layers may use (they import no PyTango).
TYPES = {"tango_bokeh.tango", "tango_bokeh.tango.sample", "tango_bokeh.tango.modes",
         "tango_bokeh.tango.names", "tango_bokeh.tango.polling",
         "tango_bokeh.tango.state", "tango_bokeh.tango.archive"}  # fmt: skip
#: Imports that still run against the layers (to be removed, see docs/architecture.md).
KNOWN: set[tuple[str, str]] = set()  # (Session.open finds its front end by name: FRONT_END)
#: Modules outside tango/ that still import PyTango themselves (to move into tango/).
PYTANGO_OUTSIDE: set[str] = set()  # (sim, the name check and the demo motion use tango/)


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    for index, names in enumerate(LAYERS):
        if part in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _imports(module: str, tree: ast.Module) -> set[str]:
    package = module if module == "tango_bokeh" or tree is None else module.rsplit(".", 1)[0]
    if (PACKAGE.parent / Path(*module.split("."))).is_dir():
        package = module
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_no_module_imports_a_layer_above_it():
    against = set()
    for module, tree in _modules().items():
        for target in _imports(module, tree):
            if not target.startswith("tango_bokeh."):
                continue
            if _layer(target) > _layer(module):
                against.add((module, target))
            elif (
                module.split(".")[1:2] != ["tango"]
                and target.startswith("tango_bokeh.tango.")
                and target not in TYPES
                and _layer(module) == _layer("tango_bokeh.views")
            ):
                against.add((module, target))  # views use only the types
    assert against == KNOWN, f"new: {sorted(against - KNOWN)}; gone: {sorted(KNOWN - against)}"


def test_nothing_outside_tango_imports_pytango():
    importers = set()
    for module, tree in _modules().items():
        if module.startswith("tango_bokeh.tango"):
            continue
        if any(t == "tango" or t.startswith("tango.") for t in _imports(module, tree)):
            importers.add(module)
    assert importers == PYTANGO_OUTSIDE, (
        f"new: {sorted(importers - PYTANGO_OUTSIDE)}; gone: {sorted(PYTANGO_OUTSIDE - importers)}"
    )


def test_every_view_kind_leaves_the_banner_steps_to_its_base():
    """A kind draws (``draw``); ``PanelView.update`` observes, draws and shows the banner, so
    no view author can forget the stale/error/invalid marks."""
    from tango_bokeh.views.kinds import kinds
    from tango_bokeh.views.panel import PanelView

    for name, kind in kinds().items():
        assert issubclass(kind.view, PanelView), name
        assert kind.view.update is PanelView.update, f"{name} overrides update: override draw"
        assert kind.view.draw is not PanelView.draw, f"{name} draws nothing"
