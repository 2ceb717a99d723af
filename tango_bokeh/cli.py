"""``tango-bokeh``: the command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from .sim import ControlSystem, ControlSystemError

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
    state_dir: Path, port: int, embedded: bool, no_servers: bool
) -> ControlSystem:
    external = None if embedded else os.environ.get("TANGO_HOST") or None
    system = ControlSystem(
        state_dir, tango_host=external, port=port, start_servers=not no_servers
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
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@control_options
def sim(state_dir: Path, port: int, embedded: bool | None, no_servers: bool) -> None:
    """Run the simulated beamline until Ctrl-C."""
    embedded = embedded if embedded is not None else not os.environ.get("TANGO_HOST")
    system = _start_control_system(state_dir, port, embedded, no_servers)
    try:
        _print_control_system(system)
        click.echo("Running; press Ctrl-C to stop.")
        sys.stdout.flush()
        _wait_for_signal()
    finally:
        click.echo("Stopping ...")
        system.stop()
        click.echo("Stopped.")


@main.command()
@control_options
def demo(state_dir: Path, port: int, embedded: bool | None, no_servers: bool) -> None:
    """The simulated beamline and its dashboard, until Ctrl-C."""
    embedded = embedded if embedded is not None else not os.environ.get("TANGO_HOST")
    system = _start_control_system(state_dir, port, embedded, no_servers)
    try:
        _print_control_system(system)
        click.echo("Running; press Ctrl-C to stop.")
        sys.stdout.flush()
        _wait_for_signal()
    finally:
        click.echo("Stopping ...")
        system.stop()
        click.echo("Stopped.")


if __name__ == "__main__":
    main()
