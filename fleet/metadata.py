"""An IMDSv2 client for the few paths a worker reads: a session token (PUT, with a TTL),
cached and renewed before it expires, a new one on 401; 404 means "nothing there". Every
request is bounded by a short timeout. The endpoint is the SDKs' own
`AWS_EC2_METADATA_SERVICE_ENDPOINT`; `AWS_EC2_METADATA_DISABLED=true` turns the client off."""

from __future__ import annotations

import logging
import os
import time
import urllib.error
from collections.abc import Mapping

from fleet.http import http_request

log = logging.getLogger(__name__)
DEFAULT_ENDPOINT = "http://169.254.169.254"  # used only where the machine says it is EC2
ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
DISABLED_VARIABLE = "AWS_EC2_METADATA_DISABLED"
TOKEN_TTL_S = 21600
TOKEN_RENEW_BEFORE_S = 60.0
TIMEOUT_S = 1.0
HOP_LIMIT_HINT = (
    "the instance metadata service did not answer the token request; in a container this is "
    "usually the instance's hop limit: set it to 2 (aws ec2 modify-instance-metadata-options "
    "--http-put-response-hop-limit 2 --instance-id ID)"
)


class MetadataUnavailable(Exception):
    """The metadata service could not be asked, or answered nonsense."""


def metadata_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(DISABLED_VARIABLE, "").strip().lower() == "true"


def endpoint_from(environ: Mapping[str, str] = os.environ) -> str | None:
    """The endpoint the environment names, if any."""
    named = environ.get(ENDPOINT_VARIABLE, "").strip()
    return named.rstrip("/") or None


class InstanceMetadata:
    def __init__(self, endpoint: str, timeout_s: float = TIMEOUT_S) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s
        self._token: str | None = None
        self._token_expires = 0.0

    def get(self, path: str) -> str | None:
        """The text at `path` (e.g. `latest/meta-data/instance-id`); None when there is none (404)."""
        for fresh_token in (False, True):
            token = self._session_token(renew=fresh_token)
            headers = {"X-aws-ec2-metadata-token": token}
            try:
                return _text(http_request(f"{self.endpoint}/{path}", headers=headers, timeout=self.timeout_s), path)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and not fresh_token:
                    continue  # the token expired early (or the service restarted): one more try with a new one
                raise MetadataUnavailable(f"instance metadata {path}: HTTP {exc.code}") from None
            except OSError as exc:
                raise MetadataUnavailable(f"instance metadata {path}: {exc}") from None
        raise MetadataUnavailable(f"instance metadata {path}: refused a fresh token")

    def _session_token(self, *, renew: bool) -> str:
        now = time.monotonic()
        if self._token is not None and not renew and now < self._token_expires - TOKEN_RENEW_BEFORE_S:
            return self._token
        headers = {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)}
        try:
            url = f"{self.endpoint}/latest/api/token"
            answer = http_request(url, method="PUT", headers=headers, timeout=self.timeout_s)
            token = _text(answer, "latest/api/token").strip()
        except urllib.error.HTTPError as exc:
            raise MetadataUnavailable(f"instance metadata token: HTTP {exc.code}") from None
        except TimeoutError:
            raise MetadataUnavailable(HOP_LIMIT_HINT) from None
        except OSError as exc:
            if isinstance(getattr(exc, "reason", None), TimeoutError):
                raise MetadataUnavailable(HOP_LIMIT_HINT) from None
            raise MetadataUnavailable(f"instance metadata token: {exc}") from None
        if not token or len(token) > 1024:
            raise MetadataUnavailable("instance metadata token: the answer is not a token")
        self._token, self._token_expires = token, now + TOKEN_TTL_S
        return token


def _text(body: bytes, path: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataUnavailable(f"instance metadata {path}: the answer is not text") from None
