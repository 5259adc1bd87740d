"""One bounded HTTP request to a local agent (the metadata service, the ECS agent)."""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit


def http_request(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None, timeout: float
) -> bytes:
    """The answer's body (urllib.error.HTTPError on an error status, OSError when unreachable)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{url}: not an http(s) URL")
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 (checked above)
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
        body: bytes = answer.read()
        return body
