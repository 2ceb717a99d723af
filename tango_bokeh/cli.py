"""``tango-bokeh``: the command line."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .sim import ControlSystem, ControlSystemError

if TYPE_CHECKING:
    from .dashboard.server import ServeOptions

DEFAULT_STATE_DIR = Path(".tango-bokeh")


def _wait_for_signal() -> int:
    """Block until SIGINT or SIGTERM; return the signal number."""
    received: list[int] = []
    done = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    while not done.wait(0.5):
        pass
    return received[0]


def _start_control_system(
    state_dir: Path, port: int, embedded: bool, no_servers: bool, server_address: str | None = None
) -> ControlSystem:
    external = None if embedded else os.environ.get("TANGO_HOST") or None
    system = ControlSystem(
        state_dir,
        tango_host=external,
        port=port,
        start_servers=not no_servers,
        server_host=server_address,
    )
    where = f"the Tango database at {external}" if external else "an embedded Tango database"
    click.echo(f"Starting the simulated beamline on {where} (state in {state_dir}) ...")
    try:
        system.start()
    except ControlSystemError as exc:
        raise click.ClickException(str(exc)) from None
    return system


def _print_control_system(system: ControlSystem) -> None:
    click.echo(f"TANGO_HOST={system.tango_host}")
    if system.start_servers:
        click.echo("Devices:")
        for device in system.devices:
            alias = f"  (alias {device.alias})" if device.alias else ""
            click.echo(f"  {device.name:<22} {device.tango_class}{alias}")


_control_options = [
    click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_STATE_DIR,
        show_default=True,
        help="Where the database file and the logs live.",
    ),
    click.option("--port", type=int, default=0, help="Database port (0: any free port)."),
    click.option(
        "--embedded/--use-tango-host",
        default=None,
        help="Start an embedded database (default unless TANGO_HOST is set).",
    ),
    click.option(
        "--no-servers",
        is_flag=True,
        help="With an existing database: register and start nothing, just check it answers.",
    ),
]


def control_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed(_control_options):
        fn = option(fn)
    return fn


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging.")
def main(verbose: int) -> None:
    """Live visualisation of Tango device attributes with bokeh."""
    from bokeh.util.logconfig import basicConfig  # also takes bokeh's own handler away

    level = logging.WARNING - 10 * verbose
    basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@control_options
@click.option(
    "--server-address",
    default="127.0.0.1",
    show_default=True,
    help="Address the device servers listen on (0.0.0.0: every interface, e.g. in a container "
    "whose devices other containers use).",
)
@click.option(
    "--archive",
    is_flag=True,
    help="Also run an HDB++ archive (a private MariaDB in the state directory) of the "
    "beamline's numbers, filled with hours of synthetic past then live events "
    "(docs/archive.md).",
)
def sim(
    state_dir: Path,
    port: int,
    embedded: bool | None,
    no_servers: bool,
    server_address: str,
    archive: bool,
) -> None:
    """Run the simulated beamline until Ctrl-C."""
    embedded = embedded if embedded is not None else not os.environ.get("TANGO_HOST")
    system = _start_control_system(state_dir, port, embedded, no_servers, server_address)
    hdbpp = None
    try:
        _print_control_system(system)
        if archive:
            from tango_bokeh_devices.archiver import DemoArchive

            click.echo("Starting the HDB++ archive ...")
            try:
                hdbpp = DemoArchive(state_dir.resolve() / "hdbpp", str(system.tango_host)).start()
            except (OSError, RuntimeError, ImportError) as exc:
                raise click.ClickException(f"the HDB++ archive did not start: {exc}") from None
            click.echo(hdbpp.describe())
        click.echo("Running; press Ctrl-C to stop.")
        sys.stdout.flush()
        _wait_for_signal()
    finally:
        click.echo("Stopping ...")
        if hdbpp is not None:
            hdbpp.stop()
        system.stop()
        click.echo("Stopped.")


def _serve_dashboards(
    files: list[Path],
    options: ServeOptions,
    users: Path | None,
    announce_extra: Callable[[], None] | None = None,
) -> int:
    """Load the files (errors: exit 1), serve them until a signal."""
    from .dashboard.auth import Access, UsersFile, UsersFileError
    from .dashboard.keys import SecretError, default_state_dir, derive, load_secret
    from .dashboard.loader import DashboardError, load_all
    from .dashboard.logins import LoginStore
    from .dashboard.server import DashboardServer, print_urls, serve_forever

    try:
        dashboards = load_all(files)
    except DashboardError as exc:
        raise DashboardsInvalid(str(exc)) from None
    try:
        users_file = UsersFile(users) if users else None
    except UsersFileError as exc:
        raise click.ClickException(str(exc)) from None
    wants_writes = [
        d.name
        for d in dashboards
        for _, panel in d.model.walk()
        if getattr(panel.content, "commands", None) or getattr(panel.content, "write", False)
    ]
    if wants_writes and users_file is None:
        names = sorted(set(wants_writes))
        click.echo(
            f"note: {', '.join(names)} {'enables' if len(names) == 1 else 'enable'} writes "
            "or commands, but no "
            "--users file was given: every page is read-only.",
            err=True,
        )
    state_dir = options.state_dir or default_state_dir()
    try:
        secret = load_secret(options.secret_file, state_dir)
    except SecretError as exc:
        raise click.ClickException(str(exc)) from None
    logins = LoginStore(state_dir / "logins.sqlite") if users_file is not None else None
    access = Access(users_file, derive(secret, "cookies"), logins)
    _log_audit(options.audit_log)
    logging.getLogger("tango_bokeh.dashboard.auth").setLevel(logging.INFO)
    server = DashboardServer(dashboards, access=access, secret=secret)
    urls = print_urls(server)

    def announce(url: str, port: int) -> None:
        urls(url, port)
        if announce_extra is not None:
            announce_extra()
        click.echo("Running; press Ctrl-C to stop.")
        sys.stdout.flush()

    try:
        return serve_forever(server, options, announce)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise click.ClickException(
                f"cannot listen on {options.address}:{options.port} ({exc.strerror}): "
                "choose another --port (0: any free port) or --address"
            ) from None
        raise


def _log_audit(path: Path | None) -> None:
    """Audit lines (writes, commands, refusals) to the log and, if given, to ``path``."""
    audit = logging.getLogger("tango_bokeh.audit")
    audit.setLevel(logging.INFO)
    if path is None:
        return
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
        os.chmod(path, 0o600)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write the audit log ({exc.strerror})") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    audit.addHandler(handler)


class ByteSize(click.ParamType):
    """A number of bytes: ``0``, ``500000``, ``64k``, ``256M``, ``1.5G`` (powers of 1024)."""

    name = "size"
    _UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
              "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30}  # fmt: skip

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        number = text.rstrip("abgikm ")
        unit = text[len(number) :].strip()
        try:
            size = float(number) * self._UNITS[unit]
        except (KeyError, ValueError):
            self.fail(f"{value!r} is not a size: write e.g. 0, 64M or 1G", param, ctx)
        if not 0 <= size < 2**50:
            self.fail(f"{value!r} is not a size between 0 and 1P", param, ctx)
        return int(size)


def _history_budget_option(fn):  # type: ignore[no-untyped-def]
    return click.option(
        "--history-budget",
        type=ByteSize(),
        default="256M",
        show_default=True,
        metavar="SIZE",
        help="Memory the shared recent history of every attribute may take together (what "
        "a trend opened late is drawn with at once; 0: none). The biggest histories are "
        "cut first.",
    )(fn)


def _set_history_budget(size: int) -> None:
    """The budget of the hub each serving process creates (after any fork)."""
    from .hub import Hub

    Hub.default_history_budget = size


class DashboardsInvalid(click.ClickException):
    """Dashboard files with problems: one problem per line, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


_serve_options = [
    click.option("--port", type=int, default=5006, show_default=True,
                 help="HTTP port (0: any free port)."),
    click.option("--address", default="127.0.0.1", show_default=True,
                 help="Address to listen on (0.0.0.0: every interface)."),
    click.option("--allow-websocket-origin", "allow_websocket_origin", multiple=True,
                 metavar="HOST[:PORT]",
                 help="Host a browser may load pages from (repeatable; default: this "
                      "server's loopback names)."),
    click.option("--users", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Users file allowing logins for writes and commands "
                      "(python -m tango_bokeh.dashboard.auth FILE NAME adds a user)."),
    click.option("--unused-session-lifetime", type=int, default=5000, show_default=True,
                 metavar="MS", help="How long a closed page keeps its subscriptions."),
    click.option("--check-unused-sessions", type=int, default=1000, show_default=True,
                 metavar="MS", help="How often closed pages are looked for."),
    click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="File with the secret that signs sessions and login cookies (mode 600; "
                      "default: $TANGO_BOKEH_SECRET, else STATE_DIR/secret, made once)."),
    click.option("--secrets-dir", "secrets_dir", type=click.Path(file_okay=False, path_type=Path),
                 default=None, help="Where the server keeps its secret and its logins "
                 "(default: $XDG_STATE_HOME/tango-bokeh)."),
    click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Also write every write, command and refusal to this file."),
    click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="ADDRESS",
                 help="A reverse proxy (address or network) whose X-Forwarded-For and "
                      "X-Forwarded-Proto are believed (repeatable)."),
    click.option("--health-detail", is_flag=True,
                 help="/healthz shows hosts, sessions and pid to anyone (default: to "
                      "logged-in users only)."),
    click.option("--max-sessions", type=click.IntRange(1), default=500, show_default=True,
                 help="Open pages the server holds at most."),
    click.option("--max-sessions-per-address", type=click.IntRange(1), default=60,
                 show_default=True, help="Open pages one client address may hold."),
    click.option("--pages-per-second", type=click.FloatRange(0.01), default=0.5,
                 show_default=True, help="New pages one address may open per second..."),
    click.option("--page-burst", type=click.IntRange(1), default=8, show_default=True,
                 help="...and at once (a control room behind one NAT address wants more)."),
    click.option("--server-pages-per-second", type=click.FloatRange(0.01), default=2.0,
                 show_default=True, help="New pages the whole server builds per second..."),
    click.option("--server-page-burst", type=click.IntRange(1), default=20, show_default=True,
                 help="...and at once (building a page runs on the loop the open pages use)."),
    click.option("--websocket-compression", type=click.IntRange(0, 9), default=1,
                 show_default=True, metavar="LEVEL",
                 help="permessage-deflate level of the pages' websockets (0: off). 1 sends a "
                      "page's history in about 0.6 and its updates in about 0.15 of the bytes, "
                      "for about 3 % more CPU and 0.2 MB more memory per open page."),
]  # fmt: skip


def serve_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed(_serve_options):
        fn = option(fn)
    return fn


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@serve_options
@click.option(
    "--num-procs",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes (0: one per core); each has its own subscriptions.",
)
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Check every attribute and command exists before serving.",
)
@click.option("--check-only", is_flag=True, help="Validate and check the files, then exit.")
@click.option("--check-timeout", type=float, default=60.0, show_default=True, metavar="S",
              help="Give up the attribute check after this many seconds.")  # fmt: skip
@_history_budget_option
def serve(
    files: tuple[Path, ...],
    port: int,
    address: str,
    allow_websocket_origin: tuple[str, ...],
    users: Path | None,
    unused_session_lifetime: int,
    check_unused_sessions: int,
    secret_file: Path | None,
    secrets_dir: Path | None,
    audit_log: Path | None,
    trusted_proxies: tuple[str, ...],
    health_detail: bool,
    max_sessions: int,
    max_sessions_per_address: int,
    pages_per_second: float,
    page_burst: int,
    server_pages_per_second: float,
    server_page_burst: int,
    websocket_compression: int,
    num_procs: int,
    check: bool,
    check_only: bool,
    check_timeout: float,
    history_budget: int,
) -> None:
    """Serve dashboard FILES (YAML), one URL path per file (its name), until Ctrl-C."""
    from .dashboard.check import check_in_subprocess
    from .dashboard.loader import DashboardError, load_all
    from .dashboard.server import ServeOptions

    try:
        load_all(files)
    except DashboardError as exc:
        raise DashboardsInvalid(str(exc)) from None
    if check or check_only:
        # In a child process: this one may fork workers and must not initialise Tango.
        result = check_in_subprocess(files, timeout=check_timeout)
        for line in result.lines:
            click.echo(line, err=True)
        if not result.ok:
            raise DashboardsInvalid(
                "the dashboards were not served" + (
                    "" if result.unavailable else ": fix the names above, or start with --no-check"
                )
            )  # fmt: skip
    if check_only:
        click.echo(f"{len(files)} dashboard file(s) OK.")
        return
    from .dashboard.guard import Limits, trusted_networks

    try:
        trusted_networks(trusted_proxies)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trusted-proxy") from None
    options = ServeOptions(
        address=address,
        port=port,
        allow_websocket_origin=allow_websocket_origin,
        num_procs=num_procs,
        unused_session_lifetime=unused_session_lifetime / 1000,
        check_unused_sessions=check_unused_sessions / 1000,
        limits=Limits(
            max_sessions=max_sessions,
            max_sessions_per_address=max_sessions_per_address,
            pages_per_second=pages_per_second,
            page_burst=page_burst,
            server_pages_per_second=server_pages_per_second,
            server_page_burst=server_page_burst,
        ),
        trusted_proxies=trusted_proxies,
        health_detail=health_detail,
        secret_file=secret_file,
        state_dir=secrets_dir,
        audit_log=audit_log,
        websocket_compression=websocket_compression,
    )
    _set_history_budget(history_budget)
    sys.exit(_serve_dashboards(list(files), options, users))


#: The demo's dashboard, from the source tree (``python3 dev.py demo`` installs it editable).
DEMO_DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "demo.yaml"


@main.command()
@control_options
@click.option(
    "--http-port",
    type=int,
    default=5006,
    show_default=True,
    help="Dashboard server port (0: any free port; a busy 5006 falls back to any).",
)
@click.option("--address", default="127.0.0.1", show_default=True, help="Dashboard server address.")
@click.option(
    "--dashboard",
    "dashboards",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Dashboard file(s) to serve (default: {DEMO_DASHBOARD.name}).",
)
@click.option(
    "--users",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Users file allowing logins for writes and commands.",
)
@click.option("--no-motion", is_flag=True, help="Leave the motors still.")  # fmt: skip
@click.option(
    "--no-archive",
    is_flag=True,
    help="Run no HDB++ archive (by default one runs when Debian's mariadb-server is "
    "installed, so that trends open with the past hour; docs/archive.md).",
)
@_history_budget_option
def demo(
    state_dir: Path,
    port: int,
    embedded: bool | None,
    no_servers: bool,
    http_port: int,
    address: str,
    dashboards: tuple[Path, ...],
    users: Path | None,
    no_motion: bool,
    no_archive: bool,
    history_budget: int,
) -> None:
    """The simulated beamline and its dashboard, until Ctrl-C."""
    from .dashboard.loader import DashboardError, load_all
    from .dashboard.server import ServeOptions
    from .sim import port_is_free
    from .tango.motion import DemoMotion

    files = list(dashboards) or [DEMO_DASHBOARD]
    try:
        load_all(files)  # before starting anything
    except DashboardError as exc:
        raise DashboardsInvalid(str(exc)) from None
    embedded = embedded if embedded is not None else not os.environ.get("TANGO_HOST")
    system = _start_control_system(state_dir, port, embedded, no_servers)
    motion = hdbpp = None
    try:
        _print_control_system(system)
        if system.tango_host:
            os.environ["TANGO_HOST"] = system.tango_host  # the dashboard server's clients
        if not no_archive and system.start_servers:
            hdbpp = _demo_archive(state_dir, str(system.tango_host))
        if http_port and not port_is_free(address, http_port):
            click.echo(f"Port {http_port} is busy: using any free port instead.")
            http_port = 0
        if not no_motion and system.start_servers:
            motion = DemoMotion(system.tango_host).start()
        options = ServeOptions(address=address, port=http_port, state_dir=state_dir)
        _set_history_budget(history_budget)
        _serve_dashboards(files, options, users)
    finally:
        click.echo("Stopping ...")
        if motion is not None:
            motion.stop()
        if hdbpp is not None:
            hdbpp.stop()
        system.stop()
        click.echo("Stopped.")


def _demo_archive(state_dir: Path, tango_host: str) -> Any:
    """The demo's HDB++ archive (as ``sim --archive`` starts it), or None with a note:
    trends then start with live data only."""
    try:
        from tango_bokeh_devices import mariadb
        from tango_bokeh_devices.archiver import DemoArchive
    except ImportError:
        return None
    if not mariadb.installed():
        click.echo("note: no HDB++ archive (Debian's mariadb-server is not installed): "
                   "trends start with live data only.")  # fmt: skip
        return None
    click.echo("Starting the HDB++ archive ...")
    try:
        hdbpp = DemoArchive(state_dir.resolve() / "hdbpp", tango_host).start()
    except (OSError, RuntimeError) as exc:
        click.echo(f"note: the HDB++ archive did not start ({exc}): trends start with live "
                   "data only.")  # fmt: skip
        return None
    click.echo(hdbpp.describe())
    return hdbpp


if __name__ == "__main__":
    main()
