"""What a dashboard file may say, as pydantic models (every key documented in docs/dashboards.md).

A dashboard is a title, a few page-wide settings and a list of panels laid
out top to bottom. A panel is one view (``trend``, ``spectrum``, ``image``,
``table``) or a container of panels (``row``, ``column``, ``tabs``). Every
model forbids unknown keys, so a typo is an error rather than a silently
ignored option. Validation here is pure (no Tango): whether attributes exist
is checked separately, by :mod:`tango_bokeh.dashboard.check`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from ..tango.archive import ArchiveConfig
from ..tango.names import InvalidName, parse_name
from ..views.kinds import ViewKind, kinds
from ..views.options import (  # noqa: F401 - parse_duration and the bounds are this module's API too
    HISTORY_BOUNDS,
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_TITLE,
    POLL_PERIOD_BOUNDS,
    REFRESH_BOUNDS,
    AttributeRef,
    PollPeriod,
    Refresh,
    Strict,
    Title,
    parse_duration,
)

#: Keys naming a panel; exactly one per list entry. View kinds come from the registry.
VIEW_KINDS: tuple[str, ...] = tuple(kinds())
CONTAINER_KINDS = ("row", "column", "tabs")
PANEL_KINDS = VIEW_KINDS + CONTAINER_KINDS


def _command_name(value: str) -> str:
    try:
        parse_name(value)
    except InvalidName:
        raise ValueError(
            f"{value!r}: expected device/command, e.g. sim/motor/1/Home or mot1/Home"
        ) from None
    return value.strip()


CommandRef = Annotated[str, Field(max_length=MAX_NAME), AfterValidator(_command_name)]


def _write_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "flag"
    return "list" if isinstance(value, list) else None


WriteSetting = Annotated[
    Annotated[bool, Tag("flag")] | Annotated[list[AttributeRef], Tag("list")],
    Discriminator(
        _write_kind,
        custom_error_type="write_setting",
        custom_error_message="expected true, false or a list of this panel's attributes",
    ),
]


class Command(Strict):
    """A command button (``commands:`` list entry): shown to logged-in users only, confirmed."""

    command: CommandRef
    label: Title | None = None
    argument: bool = False  # show an input for the command's argument

    @property
    def device(self) -> str:
        return self.command.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        return self.command.rsplit("/", 1)[1]


def _command_entry(value: Any) -> Any:
    return {"command": value} if isinstance(value, str) else value


CommandEntry = Annotated[Command, BeforeValidator(_command_entry)]


class PanelBase(Strict):
    """Keys every view panel accepts."""

    title: Title | None = None
    poll_period: PollPeriod | None = None  # client polling of attributes without events
    commands: list[CommandEntry] = Field(default_factory=list)


class Writable(Strict):
    """Writing from a panel of several attributes: ``true`` (every writable one) or a list."""

    write: WriteSetting = False

    @field_validator("write")
    @classmethod
    def _writes_are_shown(cls, value: bool | list[str], info: ValidationInfo) -> bool | list[str]:
        attributes = info.data.get("attributes")
        if isinstance(value, list) and attributes is not None:
            known = {a.lower() for a in attributes}
            for name in value:
                if name.lower() not in known:
                    raise ValueError(f"{name!r} is not one of this panel's attributes")
        return value

    @property
    def writable(self) -> list[str]:
        """The attributes offered for writing (those the file enables)."""
        write = self.write
        if write is True:
            return list(getattr(self, "attributes", []))
        return list(write) if isinstance(write, list) else []


def panel_model(kind: ViewKind) -> type[PanelBase]:
    """The model of a ``<kind>:`` panel: the kind's own options plus title, polling, commands
    (and ``write`` for kinds of several attributes)."""
    several = "attributes" in kind.options.model_fields
    # Fields come in the order: the kind's options, the page keys, then ``write`` (it is
    # checked against the attributes already read).
    bases = (Writable, PanelBase, kind.options) if several else (PanelBase, kind.options)
    model = create_model(
        f"{kind.name.title()}Panel", __base__=bases, __module__=__name__,
        __doc__=kind.options.__doc__,
    )  # fmt: skip
    return model


#: The panel model of each view kind, by its key.
VIEW_PANELS: dict[str, type[PanelBase]] = {name: panel_model(k) for name, k in kinds().items()}


class _Panel(Strict):
    """One entry of a panel list: exactly one of the keys below."""

    row: list[Panel] | None = None
    column: list[Panel] | None = None
    tabs: dict[Title, list[Panel]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(
                f"expected a panel (a mapping with one of the keys {', '.join(PANEL_KINDS)}), "
                f"got {type(value).__name__} {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Any:
        given = [kind for kind in PANEL_KINDS if getattr(self, kind) is not None]
        if not given:
            raise ValueError(f"empty panel: give one of {', '.join(PANEL_KINDS)}")
        if len(given) > 1:
            raise ValueError(
                f"one panel per list entry, found {' and '.join(given)}: start each with '- '"
            )
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in PANEL_KINDS if getattr(self, kind) is not None)

    @property
    def content(self) -> Any:
        return getattr(self, self.kind)

    @field_validator("row", "column")
    @classmethod
    def _not_empty(cls, value: list[Panel] | None) -> list[Panel] | None:
        if value is not None and not value:
            raise ValueError("a container needs at least one panel")
        return value

    @field_validator("tabs")
    @classmethod
    def _tabs_not_empty(cls, value: dict[str, list[Panel]] | None) -> Any:
        if value is not None:
            if not value:
                raise ValueError("tabs needs at least one tab (tab title: list of panels)")
            for title, panels in value.items():
                if not panels:
                    raise ValueError(f"tab {title!r} has no panel")
        return value


#: One entry of a panel list: exactly one of the view kinds' keys, or a container.
Panel = create_model(
    "Panel",
    __base__=_Panel,
    __module__=__name__,
    __doc__=_Panel.__doc__,
    **{name: (model | None, None) for name, model in VIEW_PANELS.items()},  # type: ignore[call-overload]
)
Panel.model_rebuild()


def _database_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_$]{1,64}", value):
        raise ValueError(f"{value!r}: expected a database name (letters, digits, _ and $)")
    return value


def _variable_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
        raise ValueError(f"{value!r}: expected an environment variable's name, e.g. HDBPP_PASSWORD")
    return value


class ArchiveSettings(Strict):
    """``archive:``: where the HDB++ archive of this dashboard's attributes is (docs/archive.md).

    ``reader: default`` (or no ``archive:`` key) takes pyhdbpp's own default, the ``HDB++``
    free properties of the Tango database. The password is never in the file:
    ``password_env`` names an environment variable, ``password_file`` a file.
    """

    reader: Literal["mariadb", "timescaledb", "default"] = "default"
    host: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    database: Annotated[str, AfterValidator(_database_name)] | None = None
    user: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    password_env: Annotated[str, AfterValidator(_variable_name)] | None = None
    password_file: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    timeout: Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=120)] = 10.0

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("password" in data or "passwd" in data):
            raise ValueError(
                "never write the archive's password in the file: "
                "use password_env (an environment variable) or password_file"
            )
        return data

    @model_validator(mode="after")
    def _complete(self) -> ArchiveSettings:
        given = [k for k in ("host", "port", "database", "user") if getattr(self, k) is not None]
        secret = [k for k in ("password_env", "password_file") if getattr(self, k) is not None]
        if self.reader == "default":
            if given or secret:
                raise ValueError(
                    f"reader default takes its connection from the Tango database: "
                    f"remove {', '.join(given + secret)} or name the reader (mariadb, timescaledb)"
                )
            return self
        missing = [k for k in ("host", "database", "user") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"reader {self.reader} needs {', '.join(missing)}")
        if len(secret) > 1:
            raise ValueError("give password_env or password_file, not both")
        return self

    def config(self) -> ArchiveConfig:
        """What :func:`tango_bokeh.tango.archive.open_archive` takes."""
        return ArchiveConfig.from_mapping(self.model_dump())


class Dashboard(Strict):
    """A whole dashboard file."""

    title: str = Field(min_length=1, max_length=MAX_TITLE)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    tango_host: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+:\d{1,5}$")] | None = None
    refresh: Refresh = 1.0  # seconds between page updates
    poll_period: PollPeriod | None = None  # default client polling period of this dashboard
    panels: list[Panel] = Field(min_length=1)
    archive: ArchiveSettings | None = None  # HDB++ history (docs/archive.md)

    def walk(self) -> Iterator[tuple[tuple[str | int, ...], Panel]]:
        """Every panel (containers too) with its key path, depth first."""

        def visit(
            path: tuple[str | int, ...], panels: list[Panel]
        ) -> Iterator[tuple[tuple[str | int, ...], Panel]]:
            for i, panel in enumerate(panels):
                here = (*path, i)
                yield here, panel
                kind = panel.kind
                if kind in ("row", "column"):
                    yield from visit((*here, kind), panel.content)
                elif kind == "tabs":
                    for title, inner in panel.content.items():
                        yield from visit((*here, "tabs", title), inner)

        return visit(("panels",), self.panels)

    def references(self) -> list[Reference]:
        """Every attribute and command the file names, with where it is named."""
        refs: list[Reference] = []
        for path, panel in self.walk():
            if panel.kind not in VIEW_KINDS:
                continue
            view = panel.content
            base = (*path, panel.kind)
            for sub, name in view.attribute_refs():
                refs.append(Reference((*base, *sub), self.qualify(name), panel.kind))
            write = getattr(view, "write", False)
            if isinstance(write, list):  # (``true`` offers the writable ones: nothing to check)
                for i, name in enumerate(write):
                    refs.append(Reference((*base, "write", i), self.qualify(name), "write"))
            for i, command in enumerate(view.commands):
                refs.append(
                    Reference((*base, "commands", i), self.qualify(command.command), "command")
                )
        return refs

    def attributes(self) -> list[str]:
        """Distinct attributes the dashboard reads (qualified with its ``tango_host``)."""
        seen: dict[str, str] = {}
        for ref in self.references():
            if ref.role != "command":
                seen.setdefault(parse_name(ref.name).key, ref.name)
        return list(seen.values())

    def qualify(self, name: str) -> str:
        """``name`` with this dashboard's ``tango_host`` when it has none of its own."""
        if self.tango_host and not name.lower().startswith("tango://"):
            return f"tango://{self.tango_host}/{name}"
        return name


@dataclass(frozen=True)
class Reference:
    """An attribute (or ``device/command``) named in a file, and where."""

    path: tuple[str | int, ...]
    name: str
    role: str  # trend | spectrum | image | table | write | command
