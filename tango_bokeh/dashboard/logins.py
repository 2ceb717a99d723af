"""Server-side logins and the limits on guessing passwords.

A login cookie holds only a random key; what it grants lives here, on the
server, so that logging out, removing a user or changing a password revokes
it at once, for every page and every worker process. The store is one small
sqlite file (shared by ``--num-procs`` workers and replicas on one volume);
the page and its bokeh session only ever see :func:`login_ref`, the key's
hash, which grants nothing.

:class:`Throttle` is policy as plain code: it is told about attempts and
answers how long a caller must wait. Thread contract: every method of both
classes may be called from any thread.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: How long a login lasts without logging in again.
LOGIN_LIFETIME = 12 * 3600.0


def login_ref(key: str) -> str:
    """The name of a login that can be shown and stored without granting it."""
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint(stored_hash: str) -> str:
    """Changes whenever a user's password hash changes (password changed: logins revoked)."""
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Login:
    ref: str
    user: str
    fingerprint: str
    created: float
    expires: float
    address: str


class LoginStore:
    """Live logins by :func:`login_ref`; ``path=None`` keeps them in memory (one process)."""

    def __init__(self, path: Path | None = None, lifetime: float = LOGIN_LIFETIME) -> None:
        self.path = path
        self.lifetime = lifetime
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path) if path is not None else ":memory:",
            timeout=10.0,
            check_same_thread=False,
            isolation_level=None,  # autocommit: every statement is its own transaction
        )
        with self._lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS logins (ref TEXT PRIMARY KEY, user TEXT NOT NULL, "
                "fingerprint TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL, "
                "address TEXT NOT NULL)"
            )
        if path is not None:
            path.chmod(0o600)

    def create(self, user: str, fingerprint: str, address: str) -> str:
        """A new login for ``user``; returns the key for the cookie (never stored)."""
        key = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._db.execute("DELETE FROM logins WHERE expires < ?", (now,))
            self._db.execute(
                "INSERT INTO logins VALUES (?, ?, ?, ?, ?, ?)",
                (login_ref(key), user, fingerprint, now, now + self.lifetime, address[:64]),
            )
        return key

    def get(self, ref: str) -> Login | None:
        """The login named ``ref`` if it exists and has not expired."""
        with self._lock:
            row = self._db.execute(
                "SELECT ref, user, fingerprint, created, expires, address FROM logins "
                "WHERE ref = ?",
                (ref,),
            ).fetchone()
        if row is None or row[4] < time.time():
            return None
        return Login(*row)

    def revoke(self, ref: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM logins WHERE ref = ?", (ref,)).rowcount > 0

    def revoke_user(self, user: str) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM logins WHERE user = ?", (user,)).rowcount

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM logins WHERE expires >= ?", (time.time(),)
            ).fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- guessing -------------------------------------------------------------------------------


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    lockouts: int = 0


@dataclass
class ThrottleStats:
    failures: int = 0
    refused: int = 0
    lockouts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Throttle:
    """Per user-and-address and per-address lockouts; per-user spacing across addresses.

    * ``pair_limit`` failures of one user from one address within ``window``
      lock that pair, and ``address_limit`` failures from one address (any
      users) lock that address: first for ``lockout`` seconds, doubling with
      each further lockout in the window, up to ``max_lockout``.
    * A user with ``user_limit`` failures from anywhere is never locked (an
      attacker could keep the real user out for good) but gets at most one
      attempt every ``user_spacing`` seconds: guessing slows to a crawl and
      the real user waits a few seconds at worst.

    An attempt counts as a failure from the moment it starts
    (:meth:`begin`), so parallel guesses cannot slip past the limits.
    """

    def __init__(
        self,
        *,
        window: float = 900.0,
        pair_limit: int = 5,
        address_limit: int = 20,
        user_limit: int = 10,
        lockout: float = 30.0,
        max_lockout: float = 900.0,
        user_spacing: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.pair_limit = pair_limit
        self.address_limit = address_limit
        self.user_limit = user_limit
        self.lockout = lockout
        self.max_lockout = max_lockout
        self.user_spacing = user_spacing
        self._now = clock
        self._lock = threading.Lock()
        self._pairs: dict[tuple[str, str], _Record] = defaultdict(_Record)
        self._addresses: dict[str, _Record] = defaultdict(_Record)
        self._users: dict[str, _Record] = defaultdict(_Record)
        self._user_last: dict[str, float] = {}
        self.stats = ThrottleStats()

    def begin(self, user: str, address: str) -> float:
        """0 if the attempt may go ahead (it now counts as a failure), else seconds to wait."""
        now = self._now()
        with self._lock:
            self._forget(now)
            pair, by_address = self._pairs[(user, address)], self._addresses[address]
            wait = max(pair.locked_until - now, by_address.locked_until - now)
            if wait <= 0 and (
                len(pair.failures) >= self.pair_limit
                or len(by_address.failures) >= self.address_limit
            ):
                wait = self.lockout  # that many attempts still running: no more in parallel
            users = self._users[user]
            if len(users.failures) >= self.user_limit:
                wait = max(wait, self._user_last.get(user, 0.0) + self.user_spacing - now)
            if wait > 0:
                self.stats.refused += 1
                return wait
            self._user_last[user] = now
            for record in (self._pairs[(user, address)], self._addresses[address], users):
                record.failures.append(now)
            return 0.0

    def failed(self, user: str, address: str) -> list[tuple[str, float]]:
        """Record that the attempt failed; returns the lockouts it started (scope, seconds)."""
        now = self._now()
        started: list[tuple[str, float]] = []
        with self._lock:
            self.stats.failures += 1
            for scope, record, limit in (
                ("user+address", self._pairs[(user, address)], self.pair_limit),
                ("address", self._addresses[address], self.address_limit),
            ):
                if record.locked_until <= now and len(record.failures) >= limit:
                    seconds = min(self.lockout * 2**record.lockouts, self.max_lockout)
                    record.lockouts += 1
                    record.locked_until = now + seconds
                    record.failures.clear()
                    self.stats.lockouts[scope] += 1
                    started.append((scope, seconds))
        return started

    def succeeded(self, user: str, address: str) -> None:
        """A right password: this attempt was no failure, and the pair starts afresh."""
        with self._lock:
            self._pairs.pop((user, address), None)
            for record in (self._addresses.get(address), self._users.get(user)):
                if record is not None and record.failures:
                    record.failures.pop()

    def locked(self) -> int:
        """How many user/address pairs and addresses are locked now."""
        now = self._now()
        with self._lock:
            records = [*self._pairs.values(), *self._addresses.values()]
            return sum(1 for r in records if r.locked_until > now)

    def _forget(self, now: float) -> None:
        """Drop failures older than the window, and records with nothing left to say."""
        for table in (self._pairs, self._addresses, self._users):
            for key in list(table):
                record = table[key]
                while record.failures and record.failures[0] < now - self.window:
                    record.failures.popleft()
                if not record.failures and record.locked_until <= now - self.window:
                    del table[key]
        for user in [u for u, t in self._user_last.items() if t < now - self.window]:
            del self._user_last[user]
