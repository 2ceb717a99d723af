"""Who may change things: a users file of scrypt hashes, server-side logins, bokeh's auth hooks.

Viewing is open (read-only); writing an attribute or running a command needs
a logged-in user. The users file has one ``name:hash`` line per user, made
with ``python -m tango_bokeh.dashboard.auth USERS_FILE NAME`` (the password
is asked twice and never stored or logged). A successful login stores a
login on the server (:mod:`.logins`) and gives the browser a signed, HttpOnly
cookie with its random key; every write looks the login up again, so logout,
a removed user or a changed password end it at once. Guessing is throttled
(:class:`~.logins.Throttle`); forms are accepted from this server's own pages
only (tornado's anti-forgery token *and* a same-origin check, since a page
on another port of the same host can set cookies for this one).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import html
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bokeh.server.auth_provider import AuthProvider
from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler, decode_signed_value

from ..files import FileProblem, read_text
from .logins import LoginStore, Throttle, fingerprint, login_ref

log = logging.getLogger(__name__)
audit = logging.getLogger("tango_bokeh.audit")

USER_COOKIE = "tango_bokeh_user"
COOKIE_DAYS = 1.0
#: A users file is small; anything bigger is a mistake (or an attack).
USERS_FILE_LIMIT = 1024 * 1024
#: scrypt cost: ~50 ms per check, memory 16 MiB.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$digest`` for ``password`` (a fresh random salt each time)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches the ``stored`` hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(expected), maxmem=256 * 1024 * 1024,
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class UsersFileError(ValueError):
    """A users file that cannot be used; the message names the file and line."""


class UsersFile:
    """``name:scrypt$...`` lines ('#' starts a comment), re-read when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._users: dict[str, str] = {}
        self.users()  # fail early on a bad file

    def users(self) -> Mapping[str, str]:
        """Name -> password hash, as the file says now."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise UsersFileError(
                f"{self.path}: cannot read the users file ({exc.strerror})"
            ) from None
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                check_private(self.path, stat.st_mode)
                try:
                    text = read_text(self.path, what="users file", limit=USERS_FILE_LIMIT)
                except FileProblem as exc:
                    raise UsersFileError(str(exc)) from None
                self._users = parse_users(text, str(self.path))
                self._stamp = stamp
            return dict(self._users)

    def verify(self, name: str, password: str) -> bool:
        """Check a login. Unknown names cost as much time as known ones."""
        stored = self.users().get(name)
        if stored is None:
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, stored)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.users()


def check_private(path: Path, mode: int) -> None:
    """Refuse a users file other users can read or change; warn when its group can."""
    if mode & 0o007:
        raise UsersFileError(
            f"{path}: other users can read or change the users file (mode {oct(mode & 0o777)}): "
            f"chmod 600 {path}"
        )
    if mode & 0o070:
        log.warning("%s: the users file's group has access (mode %s)", path, oct(mode & 0o777))


def parse_users(text: str, file: str = "<users>") -> dict[str, str]:
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not name or not set(name) <= _NAME_OK:
            raise UsersFileError(f"{file}:{number}: expected name:hash (make lines with "
                                 "python -m tango_bokeh.dashboard.auth FILE NAME)")  # fmt: skip
        if not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise UsersFileError(f"{file}:{number}: the password of {name!r} is not an scrypt hash")
        users[name] = stored
    return users


_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'0' * 16)}${_b64(b'0' * 32)}"


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page; ``name`` is None for anonymous (read-only) viewers."""

    name: str | None = None
    #: The server-side login this viewer came with (:func:`~.logins.login_ref`), or None.
    login: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.name is not None

    def __str__(self) -> str:
        return self.name or "anonymous"


ANONYMOUS = Viewer()


class Access:
    """The server's authentication state: users, logins, throttle; turns cookies into viewers.

    ``destinations`` are the paths a login may lead to (``/`` and each dashboard).
    """

    def __init__(
        self,
        users: UsersFile | None,
        cookie_secret: bytes | None = None,
        logins: LoginStore | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.users = users
        self.cookie_secret = cookie_secret or secrets.token_bytes(32)
        self.logins = logins or LoginStore()
        self.throttle = throttle or Throttle()
        self.destinations: frozenset[str] = frozenset({"/"})
        #: Password checks running at once (scrypt: ~50 ms and 16 MiB each).
        self.checks = threading.BoundedSemaphore(2)

    @property
    def can_login(self) -> bool:
        return self.users is not None

    def viewer_from_cookie(self, value: str | bytes | None) -> Viewer:
        """The logged-in user a signed cookie value names (anonymous if anything is off)."""
        if not value or self.users is None:
            return ANONYMOUS
        key = decode_signed_value(self.cookie_secret, USER_COOKIE, value, max_age_days=COOKIE_DAYS)
        if key is None:
            return ANONYMOUS
        return self.viewer_from_login(login_ref(key.decode(errors="replace")))

    def viewer_from_login(self, ref: str | None) -> Viewer:
        """The viewer a login grants while it lasts: not revoked, user and password unchanged."""
        if ref is None or self.users is None:
            return ANONYMOUS
        login = self.logins.get(ref)
        if login is None:
            return ANONYMOUS
        try:
            stored = self.users.users().get(login.user)
        except UsersFileError:
            log.warning("the users file became unreadable: writes are refused")
            return ANONYMOUS
        if stored is None or fingerprint(stored) != login.fingerprint:
            return ANONYMOUS
        return Viewer(login.user, ref)

    def still_allowed(self, viewer: Viewer) -> bool:
        """Whether ``viewer`` may still write: its login lives, user and password unchanged."""
        if not viewer.authenticated or viewer.login is None:
            return False
        return self.viewer_from_login(viewer.login) == viewer

    def viewer_from_cookies(self, cookies: Mapping[str, Any]) -> Viewer:
        value = cookies.get(USER_COOKIE)
        return self.viewer_from_cookie(getattr(value, "value", value))

    def log_in(self, name: str, address: str) -> str | None:
        """A new login for ``name`` (its password checked already); the cookie's key."""
        assert self.users is not None
        stored = self.users.users().get(name)
        if stored is None:
            return None
        return self.logins.create(name, fingerprint(stored), address)

    def log_out(self, viewer: Viewer) -> None:
        if viewer.login is not None:
            self.logins.revoke(viewer.login)

    def safe_next(self, target: str | None) -> str:
        """Where to go after logging in: ``/`` or a dashboard this server serves, nothing else."""
        return target if target in self.destinations else "/"

    def provider(self) -> DashboardAuth:
        return DashboardAuth(self)


class DashboardAuth(AuthProvider):
    """bokeh's auth hook: anyone may view, the login page signs users in for writing."""

    def __init__(self, access: Access) -> None:
        self.access = access
        super().__init__()

    @property
    def get_user(self) -> Callable[[Any], Viewer]:
        def get_user(handler: RequestHandler) -> Viewer:
            return self.access.viewer_from_cookie(handler.get_cookie(USER_COOKIE))

        return get_user

    @property
    def login_url(self) -> str:
        return "/login"

    @property
    def login_handler(self) -> type[RequestHandler]:
        return LoginHandler

    @property
    def logout_url(self) -> str:
        return "/logout"

    @property
    def logout_handler(self) -> type[RequestHandler]:
        return LogoutHandler


def same_origin(handler: RequestHandler) -> bool:
    """Whether a form was posted by one of this server's own pages.

    Browsers name the page in ``Origin`` (and ``Sec-Fetch-Site``); a page on
    another port of this host is another origin even though it may set
    cookies here. Clients that send neither (scripts, curl) are not browsers
    a forged form could ride on.
    """
    site = handler.request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = handler.request.headers.get("Origin") or handler.request.headers.get("Referer")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == handler.request.host.lower()


def client_address(handler: RequestHandler) -> str:
    """The client's address as the server sees it (see :mod:`.guard` for trusted proxies)."""
    address = getattr(handler.request, "client_address", None)
    return address or handler.request.remote_ip or "?"


PAGE_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0;
       background: #f4f6f9; color: #1d2733; }
header { background: #1d2733; color: #fff; padding: 14px 28px; display: flex;
         align-items: center; justify-content: space-between; }
header a { color: #cfe0ff; }
header h1 { font-size: 20px; margin: 0; font-weight: 600; }
main { max-width: 960px; margin: 28px auto; padding: 0 20px; }
.card { background: #fff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.12);
        padding: 18px 22px; margin-bottom: 16px; }
.card h2 { margin: 0 0 6px 0; font-size: 18px; }
.card h2 a { color: #0b5cad; text-decoration: none; }
.muted { color: #5b6b7c; font-size: 14px; }
form label { display: block; margin: 10px 0 4px; font-weight: 600; }
form input[type=text], form input[type=password] { width: 100%; padding: 8px; font-size: 15px;
        border: 1px solid #b8c4d0; border-radius: 4px; box-sizing: border-box; }
button { margin-top: 16px; padding: 8px 18px; font-size: 15px; background: #0b5cad;
         color: #fff; border: 0; border-radius: 4px; cursor: pointer; }
.error { color: #b00020; font-weight: 600; }
"""


def page(title: str, body: str, user: Viewer | None = None, login: bool = True) -> str:
    """A small self-contained HTML page in the dashboards' style (no external resources)."""
    who = ""
    if user is not None and user.authenticated:
        who = f'{html.escape(str(user))} · <a href="/logout">log out</a>'
    elif user is not None and login:
        who = '<a href="/login">log in</a>'
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>"
        f"<header><h1><a href='/' style='color:#fff;text-decoration:none'>"
        f"{html.escape(title)}</a></h1><span>{who}</span></header><main>{body}</main></body></html>"
    )


class LoginHandler(RequestHandler):
    """GET shows the form; POST checks the password off the loop and starts a login."""

    @property
    def access(self) -> Access:
        return self.application.auth_provider.access  # type: ignore[attr-defined]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def _form(self, error: str = "") -> str:
        if not self.access.can_login:
            return page(
                "Log in",
                "<div class='card'><p>This server is read-only: it was started without a users "
                "file (<code>--users FILE</code>), so nobody can log in to change values.</p>"
                "<p><a href='/'>Back to the dashboards</a></p></div>",
                login=False,
            )
        target = html.escape(self.access.safe_next(self.get_argument("next", "/")), quote=True)
        message = f"<p class='error'>{html.escape(error)}</p>" if error else ""
        return page(
            "Log in",
            "<div class='card'><h2>Log in to change values</h2>"
            "<p class='muted'>Viewing needs no login; writing attributes and running commands "
            f"does.</p>{message}<form method='post' action='/login'>{self.xsrf_form_html()}"
            f"<input type='hidden' name='next' value='{target}'>"
            "<label for='user'>User</label><input type='text' id='user' name='user' "
            "autocomplete='username' autofocus>"
            "<label for='password'>Password</label><input type='password' id='password' "
            "name='password' autocomplete='current-password'>"
            "<button type='submit'>Log in</button></form></div>",
            login=False,
        )

    def get(self) -> None:
        self.write(self._form())

    async def post(self) -> None:
        if not same_origin(self):
            audit.warning("refused a login form posted by another site (from %s)",
                          client_address(self))  # fmt: skip
            raise HTTPError(403, reason="form posted from another site")
        self.check_xsrf_cookie()
        name = self.get_body_argument("user", "").strip()[:128]
        password = self.get_body_argument("password", "")[:1024]
        users, client = self.access.users, client_address(self)
        if users is None or not name:
            self.set_status(403)
            self.write(self._form("Unknown user or wrong password."))
            return
        throttle = self.access.throttle
        wait = throttle.begin(name, client)
        if wait > 0:
            log.warning("login refused for user %r from %s: locked for %.0f s more",
                        name[:64], client, wait)  # fmt: skip
            self.set_status(429)
            self.set_header("Retry-After", str(int(wait) + 1))
            self.write(self._form(f"Too many failed logins: try again in {int(wait) + 1} s."))
            return
        ok = False
        try:
            ok = await IOLoop.current().run_in_executor(None, self._verify, users, name, password)
        except UsersFileError as exc:
            log.error("%s", exc)
        key = self.access.log_in(name, client) if ok else None
        if key is None:
            log.warning("failed login for user %r from %s", name[:64], client)
            for scope, seconds in throttle.failed(name, client):
                log.warning("login lockout (%s): user %r from %s for %.0f s",
                            scope, name[:64], client, seconds)  # fmt: skip
            await _sleep(1.0)  # slows down guessing on one connection
            self.set_status(403)
            self.write(self._form("Unknown user or wrong password."))
            return
        throttle.succeeded(name, client)
        log.info("login: %s from %s", name, client)
        self.set_signed_cookie(
            USER_COOKIE, key, expires_days=COOKIE_DAYS, httponly=True, samesite="Strict",
            secure=self.request.protocol == "https",
        )  # fmt: skip
        self.redirect(self.access.safe_next(self.get_body_argument("next", "/")))

    def _verify(self, users: UsersFile, name: str, password: str) -> bool:
        with self.access.checks:  # bounded: guesses cannot take every worker thread
            return users.verify(name, password)


class LogoutHandler(RequestHandler):
    """GET asks (a link cannot log anyone out); POST ends the login on the server."""

    @property
    def access(self) -> Access:
        return self.application.auth_provider.access  # type: ignore[attr-defined]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def _viewer(self) -> Viewer:
        return self.access.viewer_from_cookie(self.get_cookie(USER_COOKIE))

    def get(self) -> None:
        viewer = self._viewer()
        if not viewer.authenticated:
            self.clear_cookie(USER_COOKIE)
            self.redirect("/")
            return
        self.write(
            page(
                "Log out",
                f"<div class='card'><h2>Log out {html.escape(str(viewer))}?</h2>"
                "<p class='muted'>Every open page of this login becomes read-only.</p>"
                f"<form method='post' action='/logout'>{self.xsrf_form_html()}"
                "<button type='submit'>Log out</button></form></div>",
                viewer,
            )
        )

    def post(self) -> None:
        if not same_origin(self):
            raise HTTPError(403, reason="form posted from another site")
        self.check_xsrf_cookie()
        viewer = self._viewer()
        self.access.log_out(viewer)
        if viewer.authenticated:
            log.info("logout: %s from %s", viewer, client_address(self))
        self.clear_cookie(USER_COOKIE)
        self.redirect("/")


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def login_link(next_path: str) -> str:
    return f"/login?next={quote(next_path)}"


# -- python -m tango_bokeh.dashboard.auth USERS_FILE NAME ------------------------------------


def add_user(path: Path, name: str, password: str) -> None:
    """Add or replace ``name`` in the users file (created with mode 0600 if missing)."""
    if not name or not set(name) <= _NAME_OK:
        raise UsersFileError(f"user names may use letters, digits and . _ - @ only, not {name!r}")
    try:
        text = read_text(path, what="users file", limit=USERS_FILE_LIMIT) if path.exists() else ""
    except FileProblem as exc:
        raise UsersFileError(str(exc)) from None
    lines = text.splitlines()
    kept = [line for line in lines if line.split(":", 1)[0].strip() != name]
    kept.append(f"{name}:{hash_password(password)}")
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)  # an existing file others could read is made private too
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m tango_bokeh.dashboard.auth USERS_FILE NAME\n"
            "Adds NAME (or changes its password) in USERS_FILE; the password is read "
            "from the terminal, or from stdin when it is not a terminal.",
            file=sys.stderr,
        )
        return 2
    path, name = Path(argv[0]), argv[1]
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {name}: ")
        if password != getpass.getpass("Again: "):
            print("The passwords differ; nothing changed.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("Use at least 8 characters; nothing changed.", file=sys.stderr)
        return 1
    try:
        add_user(path, name, password)
    except UsersFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{name} can now log in ({path}, mode {oct(os.stat(path).st_mode & 0o777)}).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
