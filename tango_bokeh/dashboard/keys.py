"""The server's secret: from the environment, a file, or made once per install.

One secret signs bokeh's session ids and tokens (so that only this server
can name a session) and the login cookie; each use gets a key of its own,
derived with HMAC, so that one can never be replayed as the other. Worker
processes and replicas that share the secret accept each other's sessions
and cookies.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from ..files import FileProblem, read_text

#: The environment variable that carries the secret (compose/Kubernetes secrets).
SECRET_ENV = "TANGO_BOKEH_SECRET"
#: A secret must carry at least this many characters (bokeh wants 32 for signed sessions).
MIN_LENGTH = 32


class SecretError(ValueError):
    """A secret that cannot be used; the message says where it came from and why."""


def default_state_dir() -> Path:
    """Where a server keeps its secret and logins unless told otherwise."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tango-bokeh"


def load_secret(secret_file: Path | None = None, state_dir: Path | None = None) -> bytes:
    """``$TANGO_BOKEH_SECRET``, else ``secret_file``, else ``STATE_DIR/secret`` (made if absent)."""
    text = os.environ.get(SECRET_ENV)
    if text is not None:
        return _checked(text.strip(), f"${SECRET_ENV}")
    if secret_file is not None:
        return _checked(_read_private(secret_file), str(secret_file))
    path = (state_dir or default_state_dir()) / "secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
    return _checked(_read_private(path), str(path))


def _read_private(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the secret ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"{path}: the secret is readable by other users (mode {oct(mode & 0o777)}): "
            f"chmod 600 {path}"
        )
    try:
        return read_text(path, what="secret file", limit=4096).strip()
    except FileProblem as exc:
        raise SecretError(str(exc)) from None


def _checked(text: str, where: str) -> bytes:
    if len(text) < MIN_LENGTH:
        raise SecretError(f"{where}: the secret needs at least {MIN_LENGTH} characters")
    return text.encode()


def derive(secret: bytes, purpose: str) -> bytes:
    """A key for one ``purpose`` (``"bokeh-sessions"``, ``"cookies"``) from the secret."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).hexdigest().encode()
