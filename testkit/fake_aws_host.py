"""Loopback fakes of what AWS offers a host and no package serves here: the instance metadata
service (IMDSv2, with session tokens), the Auto Scaling Query API's lifecycle and protection
actions, and the ECS agent's task-protection endpoint. Each is a stdlib HTTP server on
127.0.0.1 that records what it was asked; never the link-local address."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> Any:
        return self.server.fake  # type: ignore[attr-defined]

    def answer(self, status: int, body: str | bytes = b"", content_type: str = "text/plain") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))


@dataclass
class MetadataState:
    instance_id: str = "i-0123456789abcdef0"
    spot_action: dict[str, str] | None = None
    rebalance: dict[str, str] | None = None
    lifecycle_state: str | None = "InService"
    mode: str = "ok"  # ok; slow (answers after `delay_s`); garbage (nonsense bodies)
    delay_s: float = 3.0
    token_ttl_cap_s: int | None = None
    requests: list[str] = field(default_factory=list)
    tokens_issued: int = 0


class FakeInstanceMetadata(_Server):
    def __init__(self) -> None:
        super().__init__(_MetadataHandler)
        self.state = MetadataState()
        self._tokens: set[str] = set()

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self._tokens.add(token)
            self.state.tokens_issued += 1
        return token

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (401), as after their TTL."""
        with self.lock:
            self._tokens.clear()

    def accepts(self, token: str | None) -> bool:
        with self.lock:
            return token in self._tokens


class _MetadataHandler(_Handler):
    def do_PUT(self) -> None:
        fake: FakeInstanceMetadata = self.fake
        fake.state.requests.append(f"PUT {self.path}")
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self.answer(400)
            return
        if fake.state.mode == "slow":
            time.sleep(fake.state.delay_s)
        self.answer(200, fake.issue_token())

    def do_GET(self) -> None:
        fake: FakeInstanceMetadata = self.fake
        state = fake.state
        state.requests.append(f"GET {self.path}")
        if state.mode == "slow":
            time.sleep(state.delay_s)
        if not fake.accepts(self.headers.get("X-aws-ec2-metadata-token")):
            self.answer(401)
            return
        found = self._found(state)
        if found is None:
            self.answer(404, "Not Found")
        elif state.mode == "garbage":
            self.answer(200, b"\xff\xfe<html>not what you asked for")
        else:
            self.answer(200, found)

    def _found(self, state: MetadataState) -> str | None:
        paths: dict[str, Callable[[], str | None]] = {
            "/latest/meta-data/instance-id": lambda: state.instance_id,
            "/latest/meta-data/spot/instance-action": lambda: _json(state.spot_action),
            "/latest/meta-data/events/recommendations/rebalance": lambda: _json(state.rebalance),
            "/latest/meta-data/autoscaling/target-lifecycle-state": lambda: state.lifecycle_state,
        }
        answer = paths.get(self.path)
        return None if answer is None else answer()


def _json(value: dict[str, str] | None) -> str | None:
    return None if value is None else json.dumps(value)


@dataclass
class AutoScalingCall:
    action: str
    parameters: dict[str, str]


class FakeAutoScaling(_Server):
    """The Query API (form-encoded POST, `Action=`), for DescribeAutoScalingInstances,
    SetInstanceProtection, RecordLifecycleActionHeartbeat and CompleteLifecycleAction."""

    def __init__(self, group: str = "workers", fail: frozenset[str] = frozenset()) -> None:
        super().__init__(_AutoScalingHandler)
        self.group = group
        self.fail = set(fail)  # actions answered with a server error
        self.calls: list[AutoScalingCall] = []

    def called(self, action: str) -> list[dict[str, str]]:
        with self.lock:
            return [call.parameters for call in self.calls if call.action == action]


class _AutoScalingHandler(_Handler):
    NAMESPACE = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

    def do_POST(self) -> None:
        fake: FakeAutoScaling = self.fake
        form = {key: values[0] for key, values in parse_qs(self.body().decode()).items()}
        action = form.pop("Action", "")
        form.pop("Version", None)
        with fake.lock:
            fake.calls.append(AutoScalingCall(action, form))
        if action in fake.fail:
            self.answer(500, self._error("InternalFailure", "failing as asked"), "text/xml")
            return
        if action == "DescribeAutoScalingInstances":
            instance = form.get("InstanceIds.member.1", "")
            member = (
                f"<member><InstanceId>{instance}</InstanceId><AutoScalingGroupName>{fake.group}</AutoScalingGroupName>"
                "<AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>InService</LifecycleState>"
                "<HealthStatus>HEALTHY</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>"
            )
            result = f"<AutoScalingInstances>{member}</AutoScalingInstances>"
        elif action in ("SetInstanceProtection", "RecordLifecycleActionHeartbeat", "CompleteLifecycleAction"):
            result = ""
        else:
            self.answer(400, self._error("InvalidAction", f"unknown action {action}"), "text/xml")
            return
        body = (
            f'<{action}Response xmlns="{self.NAMESPACE}"><{action}Result>{result}</{action}Result>'
            f"<ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></{action}Response>"
        )
        self.answer(200, body, "text/xml")

    def _error(self, code: str, message: str) -> str:
        return (
            f'<ErrorResponse xmlns="{self.NAMESPACE}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{message}</Message></Error><RequestId>fake</RequestId></ErrorResponse>"
        )


class FakeEcsAgent(_Server):
    """`PUT /task-protection/v1/state`, answering as the agent does; `failure` makes it answer
    with a `failure` body."""

    def __init__(self) -> None:
        super().__init__(_EcsAgentHandler)
        self.calls: list[dict[str, Any]] = []
        self.failure: str | None = None

    def states(self) -> list[bool]:
        with self.lock:
            return [bool(call.get("ProtectionEnabled")) for call in self.calls]


class _EcsAgentHandler(_Handler):
    def do_PUT(self) -> None:
        fake: FakeEcsAgent = self.fake
        if self.path != "/task-protection/v1/state":
            self.answer(404, json.dumps({"error": {"Code": "NotFound", "Message": self.path}}), "application/json")
            return
        try:
            body = json.loads(self.body())
        except ValueError:
            self.answer(400, json.dumps({"error": {"Code": "InvalidRequest", "Message": "not JSON"}}))
            return
        if fake.failure is not None:
            self.answer(200, json.dumps({"failure": {"Arn": "task", "Reason": fake.failure}}), "application/json")
            return
        with fake.lock:
            fake.calls.append(body)
        protection = {"ProtectionEnabled": body.get("ProtectionEnabled"), "TaskArn": "arn:aws:ecs:task/fake"}
        self.answer(200, json.dumps({"protection": protection}), "application/json")
