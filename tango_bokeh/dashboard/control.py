"""Write widgets and command buttons: only where a file enables them, only for logged-in users.

The allow-list comes from the dashboard file (``write:`` / ``commands:`` of a
panel) and is enforced on the server: a browser can only pick among the
names the server put in the page, a click from an anonymous session is
refused and logged, and commands need a second, confirming click. The Tango
call itself runs on a worker thread (never on the bokeh loop); its outcome
comes back to the page through ``safe_document_modifications``. Every write,
command and refusal goes to the ``tango_bokeh.audit`` log as one line of
``key=value`` pairs: user, client address, session, dashboard, attribute or
command, old → new value, result (``tango-bokeh serve --audit-log FILE``
writes them to a file as well).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bokeh.models import Button, Div, LayoutDOM, Row, Select, TextInput
from bokeh.models import Column as BokehColumn

from ..tango.control import Actuator, Ran, Refused, Written
from .auth import Viewer
from .schema import Command

__all__ = ["Actuator", "Controls", "Origin", "Refused", "audit_line"]

if TYPE_CHECKING:
    from ..session import Session

audit = logging.getLogger("tango_bokeh.audit")
log = logging.getLogger(__name__)

#: Seconds a command's confirmation stays open.
CONFIRM_WINDOW = 20.0


@dataclass(frozen=True)
class Origin:
    """Who asks for a write or command, and from where (for the audit line)."""

    user: Viewer
    address: str = "?"
    session: str = "?"
    dashboard: str = "?"

    def __str__(self) -> str:
        return str(self.user)


def audit_line(origin: Origin, action: str, target: str, result: str, **detail: Any) -> str:
    """One audit record: ``key=value`` pairs, values quoted where they need it."""
    fields = {
        "user": str(origin.user),
        "address": origin.address,
        "session": origin.session,
        "dashboard": origin.dashboard,
        "action": action,
        "target": target,
        **detail,
        "result": result,
    }
    return " ".join(f"{key}={_quoted(value)}" for key, value in fields.items())


def _quoted(value: Any) -> str:
    text = str(value)
    if text and all(c.isalnum() or c in "._-/:@[]" for c in text):
        return text
    return repr(text[:500])


# -- bokeh side (the Document's loop) -----------------------------------------------------------


@dataclass
class _Pending:
    command: Command
    argument: str | None
    until: float


class Controls:
    """The write/command strip under one panel. Every decision is made here, on the server."""

    def __init__(
        self,
        session: Session,
        viewer: Viewer,
        actuator: Actuator,
        writable: Sequence[str],
        labels: dict[str, str],
        commands: Sequence[Command],
        login_href: str | None,
        key: str,
        narrow: bool = False,
        authorize: Callable[[Viewer], bool] | None = None,
    ) -> None:
        self.session = session
        self.viewer = viewer
        self.actuator = actuator
        self.writable = list(writable)
        self.commands = list(commands)
        self.labels = labels
        self.login_href = login_href
        self.key = key  # a stable name prefix, so tests and scripts can find the widgets
        self._pending: _Pending | None = None
        self._narrowed = not narrow
        self._authorize = authorize or (lambda viewer: viewer.authenticated)
        self.model: LayoutDOM = self._build()

    # -- layout -----------------------------------------------------------------------------

    def _build(self) -> LayoutDOM:
        allowed = self.viewer.authenticated
        children: list[LayoutDOM] = []
        if self.writable:
            self.target = Select(
                title="Attribute",
                options=[(a, self.labels.get(a, a)) for a in self.writable],
                value=self.writable[0],
                width=220,
                disabled=not allowed,
                name=f"{self.key}-write-target",
            )
            self.value = TextInput(
                title="New value",
                placeholder="value",
                width=160,
                disabled=not allowed,
                name=f"{self.key}-write-value",
            )
            self.write_button = Button(
                label="Write",
                button_type="primary",
                width=90,
                align="end",
                disabled=not allowed,
                name=f"{self.key}-write",
            )
            self.write_button.on_click(self._on_write)
            children.append(Row(self.target, self.value, self.write_button))
        self.command_buttons: list[Button] = []
        self.argument_inputs: dict[int, TextInput] = {}
        if self.commands:
            items: list[LayoutDOM] = []
            for i, command in enumerate(self.commands):
                if command.argument:
                    field = TextInput(
                        placeholder="argument",
                        width=110,
                        disabled=not allowed,
                        name=f"{self.key}-command-{i}-argument",
                    )
                    self.argument_inputs[i] = field
                    items.append(field)
                button = Button(
                    label=command.label or command.command,
                    button_type="warning",
                    disabled=not allowed,
                    name=f"{self.key}-command-{i}",
                )
                button.on_click(lambda _event=None, i=i: self._on_command(i))
                self.command_buttons.append(button)
                items.append(button)
            children.append(Row(*items))
        self.confirm_text = Div(text="", name=f"{self.key}-confirm-text")
        self.confirm_button = Button(
            label="Confirm", button_type="danger", width=90, name=f"{self.key}-confirm"
        )
        self.cancel_button = Button(label="Cancel", width=90, name=f"{self.key}-cancel")
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(self._on_cancel)
        self.confirm_row = Row(
            self.confirm_text, self.confirm_button, self.cancel_button, visible=False
        )
        children.append(self.confirm_row)
        if allowed:
            note = f"Logged in as <b>{_escape(str(self.viewer))}</b>: changes are logged."
        elif self.login_href:
            note = f'Read-only. <a href="{self.login_href}">Log in</a> to change values.'
        else:
            note = "Read-only: this server has no users file."
        self.status = Div(
            text=f"<span style='color:#5b6b7c'>{note}</span>",
            name=f"{self.key}-status",
            sizing_mode="stretch_width",
        )
        children.append(self.status)
        return BokehColumn(
            *children,
            sizing_mode="stretch_width",
            styles={
                "background": "#f7f9fb",
                "border": "1px solid #d9dee7",
                "border-top": "0",
                "border-radius": "0 0 6px 6px",
                "padding": "4px 10px 6px 10px",
            },
        )

    def narrow_to_writable(self, writable: Mapping[str, bool | None]) -> None:
        """Offer only attributes Tango says are writable (``write: true`` panels), once known."""
        if self._narrowed or not self.writable:
            return
        if any(writable.get(a) is None for a in self.writable):
            return  # some configuration not read yet
        self._narrowed = True
        keep = [a for a in self.writable if writable.get(a)]
        if keep != self.writable and keep:
            self.writable = keep
            self.target.options = [(a, self.labels.get(a, a)) for a in keep]
            self.target.value = keep[0]

    # -- events (on the Document's loop) ----------------------------------------------------------

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00020" if error else "#1d6b2f"
        self.status.text = f"<span style='color:{colour}'>{_escape(text)}</span>"

    def origin(self) -> Origin:
        """Who is acting, from where: the session's login and its client's address."""
        dashboard = getattr(self.session, "dashboard", None)
        return Origin(
            self.viewer,
            str(getattr(self.session, "address", "?")),
            self.session.name,
            dashboard.name if dashboard is not None else "?",
        )

    def _allowed(self, what: str) -> bool:
        """Checked at every click, on the server: the page's state proves nothing.

        The login is looked up again (logout, a removed user or a changed password end
        it); the connection that sent the click was admitted only with this same login.
        """
        if not self.viewer.authenticated:
            audit.warning(audit_line(self.origin(), what, "-", "refused: not logged in"))
            self._say(f"Refused: log in to {what}.", error=True)
            return False
        if not self._authorize(self.viewer):
            audit.warning(audit_line(self.origin(), what, "-", "refused: login ended"))
            user = str(self.viewer)
            self.revoke()
            self._say(f"Refused: the login of {user} has ended; log in again.", True)
            return False
        return True

    def revoke(self) -> None:
        """The login ended: this strip becomes read-only at once."""
        if not self.viewer.authenticated:
            return
        self.viewer = Viewer()
        self._pending = None
        self.confirm_row.visible = False
        widgets: list[Any] = [*self.command_buttons, *self.argument_inputs.values()]
        if self.writable:
            widgets += [self.target, self.value, self.write_button]
        for widget in widgets:
            widget.disabled = True
        link = f' <a href="{self.login_href}">Log in</a> again to change values.' if (
            self.login_href) else ""  # fmt: skip
        self.status.text = f"<span style='color:#5b6b7c'>Logged out: read-only.{link}</span>"

    def _on_write(self, _event: Any = None) -> None:
        if not self.writable or not self._allowed("write"):
            return
        attribute = self.target.value
        if attribute not in self.writable:  # a doctored page: only the file's names
            audit.warning(audit_line(self.origin(), "write", attribute, "refused: not enabled"))
            self._say("Refused: that attribute is not writable from this dashboard.", True)
            return
        text = self.value.value or ""
        if not text.strip():
            self._say("Type a value first.", error=True)
            return
        self._say(f"Writing {attribute} …")
        origin = self.origin()
        self._follow(self.actuator.write(attribute, text), origin, "write", attribute, text)

    def _on_command(self, index: int) -> None:
        if not 0 <= index < len(self.commands) or not self._allowed("run commands"):
            return
        command = self.commands[index]
        argument = None
        if command.argument:
            argument = (self.argument_inputs[index].value or "").strip()
            if not argument:
                self._say(f"{command.command} needs an argument.", error=True)
                return
        self._pending = _Pending(command, argument, time.monotonic() + CONFIRM_WINDOW)
        shown = f"({argument})" if argument is not None else ""
        self.confirm_text.text = f"Run <b>{_escape(command.command)}{_escape(shown)}</b>?"
        self.confirm_row.visible = True

    def _on_confirm(self, _event: Any = None) -> None:
        pending, self._pending = self._pending, None
        self.confirm_row.visible = False
        if pending is None or not self._allowed("run commands"):
            return
        if time.monotonic() > pending.until:
            self._say("The confirmation expired; click the command again.", error=True)
            return
        command, argument = pending.command.command, pending.argument
        self._say(f"Running {command} …")
        self._follow(
            self.actuator.run(command, argument), self.origin(), "command", command, argument
        )

    def _on_cancel(self, _event: Any = None) -> None:
        self._pending = None
        self.confirm_row.visible = False
        self._say("Cancelled.")

    def _follow(
        self, future: Future[Any], origin: Origin, action: str, target: str, given: str | None
    ) -> None:
        """Audit the outcome and show it under the panel (the outcome comes on a Tango thread)."""
        asked = {"new": given} if action == "write" else {"argument": given}

        def done(f: Future[Any]) -> None:
            try:
                outcome = f.result()
            except Refused as exc:
                audit.warning(audit_line(origin, action, target, f"failed: {exc}", **asked))
                text, error = str(exc), True
            except Exception as exc:
                log.exception("%s %s failed", action, target)
                audit.warning(audit_line(origin, action, target, f"failed: {exc}", **asked))
                text, error = f"failed: {exc}", True
            else:
                text, error = self._outcome(origin, outcome), False
            self.session.safe_document_modifications(lambda: self._say(text, error))

        future.add_done_callback(done)

    @staticmethod
    def _outcome(origin: Origin, outcome: Written | Ran) -> str:
        if isinstance(outcome, Written):
            audit.info(
                audit_line(origin, "write", outcome.attribute, "ok",
                           old=repr(outcome.old), new=repr(outcome.new))
            )  # fmt: skip
            return f"{origin} wrote {outcome.attribute}: {outcome.old!r} → {outcome.new!r}"
        shown = "" if outcome.argument is None else repr(outcome.argument)
        audit.info(
            audit_line(origin, "command", outcome.command, "ok",
                       argument=outcome.argument, reply=repr(outcome.reply))
        )  # fmt: skip
        reply = "" if outcome.reply is None else f" → {outcome.reply!r}"
        return f"{origin} ran {outcome.command}({shown}){reply}"


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
