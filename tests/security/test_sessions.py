"""Attacks on who may act: session fixation, token replay, CORS, open redirects, logout, Host.

Each test runs against the real ``tango-bokeh serve`` (a subprocess with a
users file and a dashboard that enables a write and a command), a real
Tango device read back through its own ``DeviceProxy``, and, where a person
would use a browser, headless Chromium with separate contexts for the
victim and the attacker.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from bokeh.util.token import generate_jwt_token, get_session_id, get_token_payload
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tango_bokeh.dashboard.auth import add_user
from tango_bokeh.sim import ControlSystem

from ..browser import chromium
from ..conftest import wait_for
from ..served import Served

pytestmark = [pytest.mark.tango]

PASSWORD = "correct horse battery"
CONTROL = """\
title: Control
refresh: 0.2 s
panels:
  - table:
      attributes: [sim/motor/2/Velocity, sim/motor/2/State]
      write: [sim/motor/2/Velocity]
      commands: [sim/motor/2/Stop]
"""
KEY = "panels-0-table"


@pytest.fixture(scope="module")
def served(control_system: ControlSystem, tmp_path_factory: pytest.TempPathFactory):
    where = tmp_path_factory.mktemp("security")
    (where / "control.yaml").write_text(CONTROL)
    users = where / "users"
    add_user(users, "alice", PASSWORD)
    add_user(users, "bob", PASSWORD)  # guessed at by the throttling test (alice stays usable)
    server = Served(
        [where / "control.yaml"], control_system.env(), users=users, state_dir=where,
        extra=["--audit-log", str(where / "audit.log")],
    )  # fmt: skip
    server.audit = where / "audit.log"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        assert server.stop() == 0, server.output


# -- plain HTTP ---------------------------------------------------------------------------------


class Client:
    """A cookie-keeping HTTP client that does not follow redirects (to see them)."""

    def __init__(self) -> None:
        self.jar = CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                return None

        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect
        )

    def request(
        self, url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode(errors="replace")

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def login(
        self, base: str, password: str = PASSWORD, next_: str = "/control", user: str = "alice"
    ) -> int:
        self.request(f"{base}/login")
        xsrf = self.cookie("_xsrf")
        assert xsrf
        status, headers, _ = self.request(
            f"{base}/login",
            {"_xsrf": xsrf, "user": user, "password": password, "next": next_},
            {"Origin": base},
        )
        self.location = headers.get("Location")
        return status


def page_token(text: str) -> str:
    match = re.search(r'"token":\s*"([A-Za-z0-9_.\-]+)"', text)
    assert match, "no token in the page"
    return match.group(1)


async def _ws_opened(url: str, token: str, cookie: str | None = None) -> bool:
    """Whether a websocket with ``token`` (and ``cookie``) gets bokeh's ACK."""
    headers = {"Cookie": cookie} if cookie else {}
    request = HTTPRequest(url, headers=headers)
    try:
        socket = await websocket_connect(request, subprotocols=["bokeh", token])
    except HTTPClientError:
        return False
    try:
        header = await asyncio.wait_for(socket.read_message(), 10)
        return header is not None and '"msgtype":"ACK"' in str(header).replace(" ", "")
    except TimeoutError:
        return False
    finally:
        socket.close()


def ws_opened(url: str, token: str, cookie: str | None = None) -> bool:
    return asyncio.run(_ws_opened(url, token, cookie))


def test_client_chosen_session_ids_and_tokens_are_refused(served: Served):
    base = served.url
    client = Client()
    status, _, body = client.request(f"{base}/control?bokeh-session-id=chosen-by-attacker")
    assert status == 400 and "chooses session ids" in body
    status, _, _ = client.request(f"{base}/control", headers={"Bokeh-Session-Id": "chosen"})
    assert status == 400
    _, _, page = client.request(f"{base}/control")
    status, _, _ = client.request(f"{base}/control?bokeh-token={page_token(page)}")
    assert status == 400
    # After a login, `next` cannot smuggle a session id either.
    assert client.login(base, next_="/control?bokeh-session-id=S") == 302
    assert client.location == "/"


def test_a_copied_or_forged_token_joins_no_session(served: Served, velocity):
    base = served.url
    ws = base.replace("http://", "ws://") + "/control/ws"
    victim = Client()
    assert victim.login(base) == 302 and victim.location == "/control"
    _, _, page = victim.request(f"{base}/control")
    token = page_token(page)
    cookie = f"tango_bokeh_user={victim.cookie('tango_bokeh_user')}"
    # The token carries no cookie and no header: nothing a script could lift.
    payload = get_token_payload(token)
    assert "tango_bokeh_user" not in json.dumps(payload)
    assert payload.get("cookies") in ({}, None) and "Cookie" not in payload.get("headers", {})
    assert ws_opened(ws, token, cookie)  # the victim's own connection
    # The attacker has the token (a leaked link, a shoulder) but not the login.
    assert not ws_opened(ws, token)
    # Forged: unsigned, or signed with another secret, for the same session id.
    session_id = get_session_id(token)
    assert not ws_opened(ws, generate_jwt_token(session_id, signed=False))
    assert not ws_opened(ws, generate_jwt_token(session_id, secret_key=b"x" * 40, signed=True))
    wait_for(lambda: "the page was opened by a logged-in user" in served.output,
             what="the refusal in the log")  # fmt: skip


def test_no_credentialed_cors_and_no_cookie_in_autoload(served: Served):
    base = served.url
    victim = Client()
    victim.login(base)
    status, headers, body = victim.request(
        f"{base}/control/autoload.js?bokeh-autoload-element=x",
        headers={"Origin": "http://127.0.0.1:1"},
    )
    assert not [h for h in headers if h.lower().startswith("access-control-")]
    assert "tango_bokeh_user" not in body
    status, headers, _ = victim.request(
        f"{base}/control/autoload.js?bokeh-autoload-element=x",
        headers={"Sec-Fetch-Site": "same-site"},
    )
    assert status == 403


@pytest.mark.parametrize(
    "target",
    ["/%09/evil.example/phish", "//evil.example/", "/\\evil.example", "/control\r\nX: y",
     "http://evil.example/", "/control/../login", "/nosuch"],
)  # fmt: skip
def test_login_leads_only_to_a_served_dashboard(served: Served, target: str):
    client = Client()
    status = client.login(served.url, next_=urllib.parse.unquote(target))
    assert status == 302 and client.location == "/"


def test_unknown_host_headers_are_refused(served: Served):
    client = Client()
    for path in ("/", "/metrics", "/healthz", "/control", "/login"):
        status, _, _ = client.request(f"{served.url}{path}", headers={"Host": "evil.example"})
        assert status == 421, path
    status, _, _ = client.request(f"{served.url}/", headers={"Host": f"localhost:{served.port}"})
    assert status == 200


def test_healthz_tells_anonymous_callers_only_ok_or_failing(served: Served):
    anonymous = Client()
    status, _, body = anonymous.request(f"{served.url}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    operator = Client()
    operator.login(served.url)
    _, _, body = operator.request(f"{served.url}/healthz")
    assert {"databases", "hub", "pid"} <= set(json.loads(body))


def test_forms_from_another_origin_are_refused(served: Served):
    client = Client()
    client.request(f"{served.url}/login")
    xsrf = client.cookie("_xsrf")
    form = {"_xsrf": xsrf, "user": "alice", "password": PASSWORD, "next": "/control"}
    status, _, _ = client.request(f"{served.url}/login", form, {"Origin": "http://127.0.0.1:1"})
    assert status == 403 and client.cookie("tango_bokeh_user") is None
    status, _, _ = client.request(f"{served.url}/login", form, {"Sec-Fetch-Site": "same-site"})
    assert status == 403 and client.cookie("tango_bokeh_user") is None


def test_logout_is_a_post_and_revokes_the_cookie_everywhere(served: Served):
    base = served.url
    alice = Client()
    alice.login(base)
    cookie = alice.cookie("tango_bokeh_user")
    copied = Client()
    copied.opener.addheaders = [("Cookie", f"tango_bokeh_user={cookie}")]
    assert "Logged in" not in copied.request(f"{base}/")[2]  # the index shows who is logged in
    assert "alice" in copied.request(f"{base}/")[2]
    status, _, body = alice.request(f"{base}/logout")  # a GET only asks
    assert status == 200 and "Log out alice?" in body
    assert "alice" in copied.request(f"{base}/")[2]
    status, _, _ = alice.request(f"{base}/logout", {}, {"Origin": base})  # no token
    assert status == 403
    status, _, _ = alice.request(
        f"{base}/logout", {"_xsrf": alice.cookie("_xsrf")}, {"Origin": base}
    )
    assert status == 302
    assert "alice" not in copied.request(f"{base}/")[2]  # the copied cookie is worth nothing


def test_password_guessing_is_throttled_and_visible(served: Served):
    base = served.url
    client = Client()
    statuses = [client.login(base, password=f"guess {i}", user="bob") for i in range(6)]
    assert statuses[:5] == [403] * 5 and statuses[5] == 429
    assert client.login(base, user="bob") == 429  # locked: the right password is not checked
    assert "login lockout (user+address): user 'bob'" in served.output
    assert Client().login(base) == 302  # alice, from the same address, is not locked out
    _, _, metrics = client.request(f"{base}/metrics")
    assert re.search(r'tango_bokeh_login_lockouts_total\{scope="user\+address"\} [1-9]', metrics)


# -- in a real browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].roots().length > 0",
        timeout=30_000,
    )


def _login(page, base: str) -> None:
    page.goto(f"{base}/login?next=/control")
    page.fill("#user", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/control")
    _open(page, f"{base}/control")


def _status(page) -> str:
    return page.evaluate("(k) => Bokeh.documents[0].get_model_by_name(k + '-status').text", KEY)


def _write(page, value: str) -> None:
    page.get_by_placeholder("value").fill(value)
    page.get_by_placeholder("value").press("Enter")
    time.sleep(0.5)
    page.get_by_role("button", name="Write").click()


@pytest.mark.browser
def test_logout_in_one_tab_makes_every_open_page_read_only(served: Served, browser, velocity):
    base = served.url
    context = browser.new_context()
    try:
        tab, other = context.new_page(), context.new_page()
        _login(tab, base)
        before = velocity.read_attribute("Velocity").value
        _write(tab, str(round(before + 0.5, 3)))
        wait_for(lambda: "alice wrote" in _status(tab), what="the first write")
        other.goto(f"{base}/logout")
        other.get_by_role("button", name="Log out").click()
        other.wait_for_url(f"{base}/")
        wait_for(lambda: "Logged out: read-only" in _status(tab), timeout=10,
                 what="the open page to become read-only")  # fmt: skip
        assert tab.get_by_role("button", name="Write").is_disabled()
        written = velocity.read_attribute("Velocity").value
        tab.evaluate(
            """(k) => { const d = Bokeh.documents[0];
                for (const s of ['-write-target', '-write-value', '-write'])
                  d.get_model_by_name(k + s).disabled = false;
                d.get_model_by_name(k + '-write-value').value = '9.5'; }""",
            KEY,
        )
        time.sleep(0.5)
        tab.get_by_role("button", name="Write").click()
        wait_for(lambda: "Refused" in _status(tab), what="the refusal")
        assert velocity.read_attribute("Velocity").value == written
        audit = served.audit.read_text()  # type: ignore[attr-defined]
        assert re.search(r"user=alice address=127\.0\.0\.1 session=\S+ dashboard=control "
                         r"action=write target=sim/motor/2/Velocity old=\S+ new=\S+ result=ok",
                         audit)  # fmt: skip
    finally:
        context.close()


@pytest.mark.browser
def test_a_page_on_another_port_cannot_read_the_session_or_act(served: Served, browser, velocity):
    """The CORS attack: a page of the same host on another port, with the victim's cookies."""
    results: dict[str, str] = {}
    evil = f"""<!DOCTYPE html><html><body><script>
      fetch("{served.url}/control/autoload.js?bokeh-autoload-element=x", {{credentials: "include"}})
        .then(r => r.text()).then(t => {{ window.result = "read " + t.length; }})
        .catch(e => {{ window.result = "blocked " + e; }});
    </script></body></html>"""

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(evil.encode())

        def log_message(self, *args: object) -> None:
            results["requests"] = results.get("requests", "") + "."

    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    context = browser.new_context()
    try:
        tab = context.new_page()
        _login(tab, served.url)  # the victim is logged in in this browser
        tab.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        tab.wait_for_function("() => window.result !== undefined", timeout=15_000)
        assert tab.evaluate("window.result").startswith("blocked")
    finally:
        context.close()
        attacker.shutdown()
        attacker.server_close()
        thread.join(10)


def test_a_users_file_others_can_read_is_refused(control_system: ControlSystem, tmp_path: Path):
    users = tmp_path / "users"
    add_user(users, "alice", PASSWORD)
    assert users.stat().st_mode & 0o777 == 0o600
    users.chmod(0o644)
    (tmp_path / "control.yaml").write_text(CONTROL)
    with pytest.raises(AssertionError, match="other users can read or change the users file"):
        Served([tmp_path / "control.yaml"], control_system.env(), users=users, state_dir=tmp_path)
