"""The status page: rendered with every hostile text escaped, readable without a browser, and
its actions (drain, resume, cancel) only when turned on, only from allowed addresses, only with
the page's token and from the page itself."""

from __future__ import annotations

import io
import ipaddress
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.metrics import REGISTRY
from monitoring.monitor import Monitor
from monitoring.page_actions import LOOPBACK, ActionRules, PageActions, Refused
from monitoring.state import MinuteTally, RecentJob, RunningJob, WaitingJob, WorkerState
from monitoring.status_page import PageFacts, PageView, render
from protocol.cancel import CancelRequest, CancelUnavailable
from testkit.moto_server import free_port
from testkit.waiting import wait_until
from tests.support import Worker, job

FACTS = PageFacts((("queue", "local:/q"),), cancel_available=True)


def state_with(text: str, now: float) -> WorkerState:
    """A worker state whose every field a message can write holds `text`."""
    return WorkerState(
        pid=1, version="1", kind="native", queue="local:/q", workers=2, started_at=now - 60, updated_at=now,
        busy=1, idle=1, starting=0, in_flight=2, jobs={"failed": 1}, queue_errors=0, child_restarts=0,
        boot_failures=0, stopping=False,
        running=[RunningJob(0, text, 1, 3.0, "native", job_id=text, named=text, kind="native",
                            progress_percent=40, progress_message=text)],
        waiting=[WaitingJob(text, 1, 2.0, "a free slot", group=text)], held=1,
        recent=[RecentJob(text, text, "failed", True, now, 1.0, 1, named=text, error=text)],
        per_minute=[MinuteTally(int(now // 60 * 60), 1, 1)], waiting_for={text: 2}, scale_in_problem=text,
    )  # fmt: skip


class PageText(HTMLParser):
    """The tags of a page, and its text as a browser reads it (character references resolved)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=200))
def test_whatever_a_message_wrote_is_text_on_the_page(text: str) -> None:
    now = time.time()
    page = PageText(render(state_with(text, now), FACTS, PageView(actions=True, token="t0ken"), now))
    assert page.tags <= ALLOWED_TAGS, page.tags - ALLOWED_TAGS
    assert not [name for name, _ in page.attributes if name.startswith("on")]  # no event handler slipped in
    assert text in "".join(page.text)


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "div", "span", "strong", "ul",
                "li", "section", "table", "thead", "tbody", "tr", "th", "td", "form", "input", "button", "figure",
                "figcaption", "svg", "rect", "line", "text", "p"}  # fmt: skip


def test_a_hostile_service_name_and_error_are_escaped_where_they_appear() -> None:
    now = time.time()
    hostile = '<img src=x onerror="alert(1)">'
    page = render(state_with(hostile, now), FACTS, PageView(actions=True, token="t0ken"), now)
    assert "<img" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page


def test_the_page_before_the_first_state_and_without_actions() -> None:
    page = render(None, FACTS, PageView(actions=False, token=""))
    assert "The worker is starting" in page
    assert "<form" not in page
    now = time.time()
    page = render(state_with("job-1", now), FACTS, PageView(actions=False, token=""), now)
    assert "<form" not in page and "Healthy" in page


def test_problems_are_shown_first() -> None:
    now = time.time()
    state = state_with("job-1", now)
    stuck = WorkerState(**{**{f: getattr(state, f) for f in state.__struct_fields__}, "updated_at": now - 100})
    page = render(stuck, FACTS, PageView(actions=False, token=""), now)
    assert page.index("Unhealthy") < page.index('id="slots"')
    assert "the supervisor loop has not run for 100 s" in page


def test_the_healthy_gauge_is_read_at_each_scrape(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path / "status.json")
    assert REGISTRY.get_sample_value("api_worker_healthy") == 0  # no state yet: starting
    now = time.time()
    monitor.publish(state_with("job-1", now))
    assert REGISTRY.get_sample_value("api_worker_healthy") == 1
    monitor.latest = state_with("job-1", now - 100)  # the loop stopped publishing 100 s ago
    assert REGISTRY.get_sample_value("api_worker_healthy") == 0


# --- actions, without a worker -----------------------------------------------------------


class Marks:
    def __init__(self) -> None:
        self.requests: list[CancelRequest] = []

    def requested(self, job_ids: Sequence[str]) -> dict[str, CancelRequest]:
        return {}

    def request(self, cancel: CancelRequest) -> None:
        self.requests.append(cancel)

    def forget(self, job_id: str, requested_before: float) -> None:
        pass


def post(fields: str, **headers: str) -> dict[str, Any]:
    body = fields.encode()
    environ = {"REQUEST_METHOD": "POST", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:9100",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}  # fmt: skip
    environ.update(headers)
    return environ


def refusal(actions: PageActions, action: str, environ: dict[str, Any]) -> str:
    try:
        actions.act(action, environ)
    except Refused as refused:
        return f"{refused.status}: {refused}"
    raise AssertionError("the action was taken")


def test_actions_are_refused_unless_every_check_passes() -> None:
    asked: list[str] = []
    actions = PageActions(ActionRules(LOOPBACK, Marks()), "t0ken", asked.append)
    assert refusal(actions, "drain", {**post("token=t0ken"), "REQUEST_METHOD": "GET"}).startswith("405")
    assert "not taken from 10.1.2.3" in refusal(actions, "drain", post("token=t0ken", REMOTE_ADDR="10.1.2.3"))
    assert "Host header" in refusal(actions, "drain", post("token=t0ken", HTTP_HOST="rebound.example:9100"))
    assert "sent from 'http://evil.example'" in refusal(
        actions, "drain", post("token=t0ken", HTTP_ORIGIN="http://evil.example")
    )
    assert "another site" in refusal(actions, "drain", post("token=t0ken", HTTP_SEC_FETCH_SITE="cross-site"))
    assert "token" in refusal(actions, "drain", post("token=guess"))
    assert "token" in refusal(actions, "drain", post(""))
    assert refusal(actions, "reboot", post("token=t0ken")).startswith("404")
    assert refusal(actions, "drain", {**post("token=t0ken"), "CONTENT_LENGTH": "99999"}).startswith("413")
    assert refusal(actions, "cancel", post("token=t0ken&job_id=")).startswith("400")
    assert refusal(actions, "drain", post("&".join(f"f{n}=1" for n in range(20)) + "&token=t0ken")).startswith("400")
    assert asked == []


def test_actions_from_the_page_itself() -> None:
    asked: list[str] = []
    marks = Marks()
    actions = PageActions(ActionRules(LOOPBACK, marks), "t0ken", asked.append)
    page_headers = {"HTTP_ORIGIN": "http://127.0.0.1:9100", "HTTP_SEC_FETCH_SITE": "same-origin"}
    assert actions.act("drain", post("token=t0ken", **page_headers)) == "drain"
    assert actions.act("resume", post("token=t0ken", HTTP_HOST="localhost:9100")) == "resume"
    assert actions.act("cancel", post("token=t0ken&job_id=job%3C1%3E&reason=stuck", REMOTE_ADDR="::1")) == "cancel"
    assert asked == ["drain", "resume"]
    [cancel] = marks.requests
    assert (cancel.job_id, cancel.reason, cancel.requested_by) == ("job<1>", "stuck", "the status page (::1)")


class UnreachableMarks(Marks):
    def request(self, cancel: CancelRequest) -> None:
        raise CancelUnavailable("the job table jobs is unreachable (connection refused)")


def test_a_cancel_that_cannot_be_stored_is_a_503_naming_why() -> None:
    actions = PageActions(ActionRules(LOOPBACK, UnreachableMarks()), "t0ken", lambda _: None)
    answer = refusal(actions, "cancel", post("token=t0ken&job_id=j1"))
    assert answer.startswith("503") and "connection refused" in answer


def test_allowed_networks_and_ipv4_mapped_clients() -> None:
    rules = ActionRules((ipaddress.ip_network("10.0.0.0/8"),), None)
    actions = PageActions(rules, "t0ken", lambda _: None)
    assert actions.may_act({"REMOTE_ADDR": "::ffff:10.1.2.3"})
    assert not actions.may_act({"REMOTE_ADDR": "127.0.0.1"})
    assert not actions.may_act({"REMOTE_ADDR": "not an address"})
    assert "409" in refusal(actions, "cancel", post("token=t0ken&job_id=j", REMOTE_ADDR="10.0.0.1"))


# --- a running worker --------------------------------------------------------------------


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Status, body and Location, without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers.get("Location", "")


def page_when(base: str, shows: str = "") -> str:
    """The page, once it answers 200 and holds `shows`."""

    def found() -> str | None:
        status, page, _ = fetch(f"{base}/")
        return page if status == 200 and shows in page else None

    return wait_until(found, 20, f"a page showing {shows!r}")


def token_of(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found, "the page has no action form"
    return found.group(1)


def test_a_read_only_page_by_default(tmp_path: Path) -> None:
    port = free_port()
    worker = Worker(tmp_path, options=["--metrics-port", str(port)])
    try:
        worker.start()
        base = f"http://127.0.0.1:{port}"
        assert "<form" not in page_when(base)
        status, body, _ = fetch(f"{base}/actions/drain", data=b"token=x")
        assert status == 403 and "--status-actions" in body
        assert fetch(f"{base}/nowhere")[0] == 404
        assert fetch(f"{base}/metrics")[0] == 200
    finally:
        worker.stop()


def test_drain_resume_and_cancel_from_the_page(tmp_path: Path) -> None:
    port = free_port()
    worker = Worker(tmp_path, workers=1, options=["--metrics-port", str(port), "--status-actions",
                                                  "--cancel-poll", "0.5"])  # fmt: skip
    try:
        worker.start()
        base = f"http://127.0.0.1:{port}"
        token = token_of(page_when(base))

        status, _, location = fetch(f"{base}/actions/drain", data=f"token={token}".encode())
        assert (status, location) == (303, "/?notice=drain")
        page_when(base, "Drained")
        queued = worker.submit(job())
        assert "Drain asked" in fetch(f"{base}/?notice=drain")[1]
        wait_until(lambda: "drained" in fetch(f"{base}/healthz")[1], 20, "healthz to say drained")
        assert worker.results_for(queued) == []  # nothing starts while drained

        assert fetch(f"{base}/actions/resume", data=f"token={token}".encode())[0] == 303
        assert worker.result(queued)["status"] == "succeeded"

        running = worker.submit_and_await_start(tmp_path / "started", sleep_s=120)
        page_when(base, f'name="job_id" value="{running}"')
        data = f"token={token}&job_id={running}".encode()
        assert fetch(f"{base}/actions/cancel", data=data)[0] == 303
        result = worker.result(running)
        assert result["status"] == "canceled"
        assert "the status page (127.0.0.1)" in result["error"]["message"]
    finally:
        worker.stop()


def test_actions_only_from_the_allowed_networks(tmp_path: Path) -> None:
    port = free_port()
    options = ["--metrics-port", str(port), "--status-actions", "--status-actions-from", "192.0.2.0/24"]
    worker = Worker(tmp_path, options=options)
    try:
        worker.start()
        base = f"http://127.0.0.1:{port}"
        assert "<form" not in page_when(base)  # this client may not act: no forms, no token
        status, body, _ = fetch(f"{base}/actions/drain", data=b"token=x")
        assert status == 403 and "not taken from 127.0.0.1" in body
    finally:
        worker.stop()
