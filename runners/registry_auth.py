"""Registry credentials, resolved for each pull and held only in memory.

ECR registries get a token from the ECR API with the worker's own AWS credentials, kept until
30 minutes (plus jitter) before it expires. Every other registry gets what the Docker config
says (`DOCKER_CONFIG` or ~/.docker/config.json: auths, credHelpers, credsStore), read again
whenever the file changes, so new credentials reach the next pull without a restart. Nothing
here is logged but a registry's name.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from docker import auth
from docker.errors import DockerException
from docker.utils.config import find_config_file

from runners.image_policy import split_reference
from runners.process import RunnerFault

log = logging.getLogger(__name__)

ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
REFRESH_BEFORE_EXPIRY_S = 1800.0
REFRESH_JITTER_S = 300.0

Credentials = dict[str, Any]  # as the engine's X-Registry-Auth header takes them


def registry_of(image: str) -> str:
    """The registry host an image reference names (`docker.io` when it names none)."""
    return str(auth.resolve_repository_name(split_reference(image)[0])[0])


@dataclass
class _Token:
    credentials: Credentials
    refresh_at: float  # time.time(); past it, a new token is asked for


class RegistryCredentials:
    def __init__(
        self,
        ecr_registries: tuple[str, ...] = (),
        ecr_client: Callable[[str | None], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`ecr_registries`: hosts to treat as ECR besides those named like ECR's;
        `ecr_client`: makes an ECR client for a region (None: boto3's default region)."""
        self.ecr_registries = frozenset(ecr_registries)
        self._ecr_client = ecr_client or _boto3_ecr_client
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self._config: auth.AuthConfig | None = None
        self._config_seen: tuple[str, int, int, int] | None = None  # path, mtime_ns, size, inode

    def is_ecr(self, registry: str) -> bool:
        return registry in self.ecr_registries or ECR_HOST.match(registry) is not None

    def for_registry(self, registry: str) -> Credentials | None:
        """What to pull from `registry` with; None: pull anonymously. RunnerFault when an ECR
        token cannot be had."""
        if self.is_ecr(registry):
            return self._ecr_token(registry)
        found: Credentials | None = self._docker_config().resolve_authconfig(registry)
        return found

    def forget(self, registry: str) -> None:
        """The registry refused what it was given: resolve afresh for the next pull."""
        self._tokens.pop(registry, None)
        self._config_seen = None

    def _ecr_token(self, registry: str) -> Credentials:
        token = self._tokens.get(registry)
        if token is not None and self._clock() < token.refresh_at:
            return token.credentials
        match = ECR_HOST.match(registry)
        region = match["region"] if match else None
        try:
            client = self._ecr_client(region)
            found = client.get_authorization_token(**({"registryIds": [match["account"]]} if match else {}))
            data = found["authorizationData"][0]
            user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        except (BotoCoreError, ClientError, KeyError, IndexError, ValueError) as exc:
            raise RunnerFault(f"cannot get an ECR token for registry {registry}: {_without_secrets(exc)}") from None
        credentials: Credentials = {"username": user, "password": password, "serveraddress": registry}
        expires = data.get("expiresAt")
        expires_at = expires.timestamp() if expires is not None else self._clock()
        refresh_at = expires_at - REFRESH_BEFORE_EXPIRY_S - random.uniform(0, REFRESH_JITTER_S)  # noqa: S311 (spreads refreshes; no secret)
        self._tokens[registry] = _Token(credentials, refresh_at)
        log.info("got an ECR token", extra={"registry": registry, "expires_at": expires_at})
        return credentials

    def _docker_config(self) -> auth.AuthConfig:
        """The Docker config as the file is now: read again when it changed (or appeared)."""
        path = find_config_file()
        seen: tuple[str, int, int, int] | None = None
        if path is not None:
            try:
                status = os.stat(path)
                seen = (str(path), status.st_mtime_ns, status.st_size, status.st_ino)
            except OSError:
                path = None
        if self._config is None or seen != self._config_seen:
            try:
                self._config = auth.load_config(config_path=path) if path else auth.AuthConfig({})
            except DockerException as exc:
                log.warning("cannot read the Docker config; pulling without credentials", extra={"error": str(exc)})
                self._config = auth.AuthConfig({})
            self._config_seen = seen
        return self._config


def _boto3_ecr_client(region: str | None) -> Any:
    return boto3.client("ecr", region_name=region)


def _without_secrets(exc: Exception) -> str:
    """boto's errors name the call and the service's message, never the token."""
    return f"{type(exc).__name__}: {exc}"
