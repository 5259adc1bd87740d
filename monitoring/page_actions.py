"""What the status page may do, when the operator turns its actions on (`--status-actions`):
drain the worker, resume it, and cancel a running job.

Every action is a POST from the page itself: the client's address must be in the allowed
networks (loopback by default), the Host header must name an address or this host (a page on
another site cannot reach the worker through a DNS name it controls), a browser's Origin and
Sec-Fetch-Site headers must say the form came from this page, and the form must carry the page's
token. Anything else is refused with 403, naming what was wrong."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.cancel import CancelMarks, CancelUnavailable, new_cancel_request

log = logging.getLogger(__name__)
MAX_FORM_BYTES = 4096
MAX_JOB_ID_CHARS = 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
DRAIN, RESUME = "drain", "resume"


class Refused(Exception):
    def __init__(self, status: str, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass(frozen=True)
class ActionRules:
    allowed: tuple[Network, ...]  # client networks whose requests may act
    marks: CancelMarks | None  # where cancel requests go; None: canceling is not available


class PageActions:
    def __init__(self, rules: ActionRules, token: str, ask: Callable[[str], None]) -> None:
        self.rules = rules
        self.token = token
        self.ask = ask  # hands drain or resume to the supervisor's loop
        self._own_names = {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}

    def may_act(self, environ: dict[str, Any]) -> bool:
        """Whether the page shows this client the action forms."""
        return _client_address(environ, self.rules.allowed) is not None

    def act(self, action: str, environ: dict[str, Any]) -> str:
        """Do `action` (drain, resume, cancel); returns the notice to show. Raises Refused."""
        if environ.get("REQUEST_METHOD") != "POST":
            raise Refused("405 Method Not Allowed", "actions are POSTed by the status page's forms")
        client = _client_address(environ, self.rules.allowed)
        if client is None:
            raise Refused("403 Forbidden", f"actions are not taken from {environ.get('REMOTE_ADDR')}")
        self._check_origin(environ)
        form = _read_form(environ)
        if not hmac.compare_digest(form.get("token", ""), self.token):
            raise Refused("403 Forbidden", "the form's token is missing or stale: reload the page")
        if action in (DRAIN, RESUME):
            self.ask(action)
            log.info("status page action", extra={"action": action, "client": client})
            return action
        if action == "cancel":
            self._cancel(form, client)
            return action
        raise Refused("404 Not Found", f"no action {action!r}")

    def _cancel(self, form: dict[str, str], client: str) -> None:
        marks = self.rules.marks
        if marks is None:
            raise Refused("409 Conflict", "canceling needs the embedded queue or --job-table")
        job_id = form.get("job_id", "")
        if not job_id or len(job_id) > MAX_JOB_ID_CHARS:
            raise Refused("400 Bad Request", f"job_id must be 1 to {MAX_JOB_ID_CHARS} characters")
        reason = form.get("reason") or "canceled from the status page"
        request = new_cancel_request(job_id, reason, requested_by=f"the status page ({client})")
        try:
            marks.request(request)
        except CancelUnavailable as exc:
            raise Refused("503 Service Unavailable", f"the cancel request could not be stored: {exc}") from None
        log.info("status page action", extra={"action": "cancel", "job_id": job_id, "client": client})

    def _check_origin(self, environ: dict[str, Any]) -> None:
        host = environ.get("HTTP_HOST", "")
        if not self._own_host(host):
            raise Refused("403 Forbidden", f"the Host header {host!r} names neither an address nor this host")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != host:
            raise Refused("403 Forbidden", f"the form was sent from {origin!r}, not from this page")
        site = environ.get("HTTP_SEC_FETCH_SITE")
        if site is not None and site not in ("same-origin", "none"):
            raise Refused("403 Forbidden", f"the form was sent from another site ({site})")

    def _own_host(self, host: str) -> bool:
        name = urllib.parse.urlsplit(f"//{host}").hostname or ""
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return name.lower() in self._own_names
        return True


def _client_address(environ: dict[str, Any], allowed: tuple[Network, ...]) -> str | None:
    """The client's address when it is in an allowed network, else None."""
    address = environ.get("REMOTE_ADDR", "")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return address if any(parsed in network for network in allowed) else None


def _read_form(environ: dict[str, Any]) -> dict[str, str]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise Refused("400 Bad Request", "Content-Length is not a number") from None
    if not 0 <= length <= MAX_FORM_BYTES:
        raise Refused("413 Content Too Large", f"a form is at most {MAX_FORM_BYTES} bytes")
    body = environ["wsgi.input"].read(length).decode("utf-8", "replace")
    try:
        fields = urllib.parse.parse_qs(body, max_num_fields=10)
    except ValueError:
        raise Refused("400 Bad Request", "a form has at most 10 fields") from None
    return {name: values[0] for name, values in fields.items()}
