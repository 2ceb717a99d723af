"""Server-side logins and the guessing throttle, as policy (a fake clock, no server)."""

from __future__ import annotations

from pathlib import Path

from tango_bokeh.dashboard.auth import Access, UsersFile, add_user
from tango_bokeh.dashboard.logins import LoginStore, Throttle, login_ref


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(throttle: Throttle, user: str, address: str, times: int) -> list[float]:
    waits = []
    for _ in range(times):
        wait = throttle.begin(user, address)
        waits.append(wait)
        if wait == 0:
            throttle.failed(user, address)
    return waits


def test_a_pair_is_locked_after_five_failures_and_the_lock_doubles_up_to_the_cap():
    clock = Clock()
    throttle = Throttle(clock=clock, lockout=30.0, max_lockout=100.0, user_limit=10**6)
    assert _fail(throttle, "bob", "10.0.0.1", 5) == [0.0] * 5
    assert throttle.begin("bob", "10.0.0.1") == 30.0  # locked
    assert throttle.begin("bob", "10.0.0.2") == 0.0  # the same user elsewhere is not
    throttle.failed("bob", "10.0.0.2")
    assert throttle.begin("alice", "10.0.0.1") == 0.0  # nor another user from there
    throttle.succeeded("alice", "10.0.0.1")
    locks = []
    for _ in range(4):
        clock.now += 120  # past the lock, inside the 900 s window: the next lock is longer
        _fail(throttle, "bob", "10.0.0.1", 5)
        locks.append(throttle.begin("bob", "10.0.0.1"))
    assert locks == [60.0, 100.0, 100.0, 100.0]  # doubled, then capped
    assert throttle.stats.lockouts["user+address"] == 5


def test_parallel_attempts_cannot_slip_past_the_limit():
    throttle = Throttle(clock=Clock())
    started = [throttle.begin("bob", "10.0.0.1") for _ in range(30)]
    assert started.count(0.0) == 5  # five in flight, the rest refused before any check


def test_a_user_guessed_from_everywhere_is_slowed_never_locked_out():
    clock = Clock()
    throttle = Throttle(clock=clock, user_limit=10, user_spacing=5.0)
    for i in range(10):
        assert _fail(throttle, "alice", f"10.0.1.{i}", 1) == [0.0]
    assert throttle.begin("alice", "10.0.2.1") > 0  # too soon after the last attempt
    clock.now += 5.0
    assert throttle.begin("alice", "10.0.2.1") == 0.0  # the real user gets in, at worst 5 s later
    throttle.succeeded("alice", "10.0.2.1")


def test_failures_are_forgotten_after_the_window():
    clock = Clock()
    throttle = Throttle(clock=clock, window=900.0)
    _fail(throttle, "bob", "10.0.0.1", 4)
    clock.now += 901
    assert _fail(throttle, "bob", "10.0.0.1", 4) == [0.0] * 4
    assert throttle.begin("bob", "10.0.0.1") == 0.0


def test_logins_end_on_logout_removal_and_password_change(tmp_path: Path):
    users = tmp_path / "users"
    add_user(users, "alice", "correct horse")
    store = LoginStore(tmp_path / "logins.sqlite")
    access = Access(UsersFile(users), logins=store)
    first = access.viewer_from_login(login_ref(access.log_in("alice", "10.0.0.1") or ""))
    second = access.viewer_from_login(login_ref(access.log_in("alice", "10.0.0.2") or ""))
    assert first.name == second.name == "alice" and first.login != second.login
    access.log_out(first)
    assert not access.still_allowed(first) and access.still_allowed(second)
    # Another process sharing the file sees the same logins.
    other = Access(UsersFile(users), logins=LoginStore(tmp_path / "logins.sqlite"))
    assert other.still_allowed(second) and not other.still_allowed(first)
    add_user(users, "alice", "a new password")  # a changed password ends every login
    assert not access.still_allowed(second)
    third = access.viewer_from_login(login_ref(access.log_in("alice", "10.0.0.1") or ""))
    assert access.still_allowed(third)
    users.write_text("")  # alice removed
    assert not access.still_allowed(third)
    assert (tmp_path / "logins.sqlite").stat().st_mode & 0o777 == 0o600


def test_an_expired_login_grants_nothing(tmp_path: Path):
    users = tmp_path / "users"
    add_user(users, "alice", "correct horse")
    access = Access(UsersFile(users), logins=LoginStore(lifetime=-1.0))
    viewer = access.viewer_from_login(login_ref(access.log_in("alice", "10.0.0.1") or ""))
    assert not viewer.authenticated
