"""ECS task scale-in protection through the ECS agent's endpoint (`$ECS_AGENT_URI`)."""

from __future__ import annotations

import json
import urllib.error

from fleet.autoscaling import FleetCallFailed
from fleet.http import http_request

TIMEOUT_S = 5.0
MIN_MINUTES, MAX_MINUTES = 1, 2880


def protection_minutes(seconds: float) -> int:
    """A protection's lifetime in whole minutes, as the agent accepts it (1 to 2,880)."""
    return max(MIN_MINUTES, min(MAX_MINUTES, int(-(-seconds // 60))))


class TaskProtection:
    def __init__(self, agent_uri: str) -> None:
        self.url = f"{agent_uri.rstrip('/')}/task-protection/v1/state"

    def set(self, enabled: bool, minutes: int) -> None:
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = minutes
        headers = {"Content-Type": "application/json"}
        try:
            data = json.dumps(body).encode()
            answer = http_request(self.url, method="PUT", headers=headers, data=data, timeout=TIMEOUT_S)
            text = answer.decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            raise FleetCallFailed(f"ECS task protection: HTTP {exc.code}: {_problem(text) or text[:200]}") from None
        except OSError as exc:
            raise FleetCallFailed(f"ECS task protection: {exc}") from None
        problem = _problem(text)
        if problem:
            raise FleetCallFailed(f"ECS task protection: {problem}")


def _problem(text: str) -> str | None:
    """The agent's `failure` or `error` in its answer, if any."""
    try:
        answer = json.loads(text)
    except ValueError:
        return "the agent's answer is not JSON"
    if not isinstance(answer, dict):
        return "the agent's answer is not a JSON object"
    for key in ("failure", "error"):
        found = answer.get(key)
        if found:
            if isinstance(found, dict):
                return f"{key}: {found.get('Code', '')} {found.get('Reason') or found.get('Message') or ''}".strip()
            return f"{key}: {found}"
    return None
