"""Credentials, region and endpoint for the S3 engine, resolved by boto3's own chain.

Whatever boto3 would use is what the engine uses: `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`,
the config file's `endpoint_url`, profiles, environment keys, web identity, ECS container and
instance-role credentials, refreshing ones included. The engine never runs a credential chain
of its own (obstore's would probe the instance metadata address by itself).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

# Credentials handed to the engine are asked for again at least this often, and before the
# refreshable ones expire, so a rotated instance-role key is picked up in time.
CREDENTIAL_TTL = timedelta(minutes=5)
EXPIRY_MARGIN = timedelta(minutes=1)


class BotoCredentials:
    """An obstore credential provider backed by a boto3 session's credentials."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def __call__(self) -> dict[str, Any]:
        credentials = self._session.get_credentials()
        if credentials is None:
            raise RuntimeError("no AWS credentials found by boto3's credential chain")
        frozen = credentials.get_frozen_credentials()
        expires_at = datetime.now(UTC) + CREDENTIAL_TTL
        expiry = getattr(credentials, "_expiry_time", None)  # RefreshableCredentials only
        if isinstance(expiry, datetime):
            expires_at = min(expires_at, expiry.astimezone(UTC) - EXPIRY_MARGIN)
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": expires_at,
        }


def engine_options(client: Any) -> dict[str, Any]:
    """obstore S3Store keyword arguments matching a boto3 S3 client's endpoint and region."""
    endpoint = str(client.meta.endpoint_url)
    return {
        "endpoint": endpoint,
        "region": client.meta.region_name or "us-east-1",
        "client_options": {"allow_http": endpoint.startswith("http://")},
    }
