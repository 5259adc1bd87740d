"""Registry credentials without an engine: ECR tokens cached and refreshed before expiry, the
Docker config read again when it changes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import NoCredentialsError

from runners.process import RunnerFault
from runners.registry_auth import REFRESH_BEFORE_EXPIRY_S, REFRESH_JITTER_S, RegistryCredentials, registry_of

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


class FakeEcr:
    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.calls: list[tuple[str | None, dict[str, Any]]] = []
        self.failure: Exception | None = None

    def client(self, region: str | None) -> FakeEcr:
        self.region = region
        return self

    def get_authorization_token(self, **arguments: Any) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        self.calls.append((self.region, arguments))
        token = base64.b64encode(f"AWS:token-{len(self.calls)}".encode()).decode()
        expires = datetime.fromtimestamp(self.expires_at, UTC)
        return {"authorizationData": [{"authorizationToken": token, "expiresAt": expires}]}


def password(credentials: RegistryCredentials, registry: str) -> object:
    found = credentials.for_registry(registry)
    assert found is not None
    return found["password"]


def test_registry_of_an_image_reference() -> None:
    assert registry_of("busybox") == "docker.io"
    assert registry_of("user/tool:1") == "docker.io"
    assert registry_of("127.0.0.1:5000/x/y:2") == "127.0.0.1:5000"
    assert registry_of(f"{ECR}/tools/bwa@sha256:{'a' * 64}") == ECR


def test_an_ecr_token_is_kept_until_half_an_hour_before_it_expires_then_asked_for_again() -> None:
    now = [1000.0]
    ecr = FakeEcr(expires_at=1000.0 + 12 * 3600)
    credentials = RegistryCredentials(ecr_client=ecr.client, clock=lambda: now[0])

    first = credentials.for_registry(ECR)
    assert first == {"username": "AWS", "password": "token-1", "serveraddress": ECR}
    assert ecr.calls == [("eu-west-1", {"registryIds": ["123456789012"]})]
    now[0] = ecr.expires_at - REFRESH_BEFORE_EXPIRY_S - REFRESH_JITTER_S - 1
    assert credentials.for_registry(ECR) == first
    now[0] = ecr.expires_at - REFRESH_BEFORE_EXPIRY_S + 1
    assert password(credentials, ECR) == "token-2"
    assert len(ecr.calls) == 2


def test_a_refused_token_is_asked_for_afresh_and_a_named_registry_counts_as_ecr() -> None:
    ecr = FakeEcr(expires_at=10**10)
    credentials = RegistryCredentials(("registry.internal:5000",), ecr_client=ecr.client)
    assert password(credentials, "registry.internal:5000") == "token-1"
    assert ecr.calls == [(None, {})]  # not named like ECR: the default region, the caller's own account
    credentials.forget("registry.internal:5000")
    assert password(credentials, "registry.internal:5000") == "token-2"


def test_no_ecr_token_is_a_retryable_fault_naming_the_registry() -> None:
    ecr = FakeEcr(expires_at=10**10)
    ecr.failure = NoCredentialsError()
    with pytest.raises(RunnerFault, match=rf"cannot get an ECR token for registry {ECR}: NoCredentialsError"):
        RegistryCredentials(ecr_client=ecr.client).for_registry(ECR)


def test_the_docker_config_is_read_again_when_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    credentials = RegistryCredentials()
    assert credentials.for_registry("127.0.0.1:5000") is None  # no file yet: anonymous

    def write(password: str) -> None:
        auth = base64.b64encode(f"alice:{password}".encode()).decode()
        (tmp_path / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": auth}}}))

    write("first")
    assert password(credentials, "127.0.0.1:5000") == "first"
    write("second-and-longer")
    assert password(credentials, "127.0.0.1:5000") == "second-and-longer"
    (tmp_path / "config.json").write_text("not json")
    assert credentials.for_registry("127.0.0.1:5000") is None
