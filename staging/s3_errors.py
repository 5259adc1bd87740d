"""A boto3 or obstore failure as a job's outcome: a missing object is the message's fault
(`rejected`), access denied a final `error`, anything else a retried `error`, each naming the URI."""

from __future__ import annotations

from typing import Any

from protocol.uris import ObjectUri
from staging.checksums import ChecksumMismatch
from staging.errors import StagingFault, StagingRejected

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


def translate(exc: Exception, uri: ObjectUri) -> Exception:
    """A boto3 or obstore failure as the job's outcome: missing is the message's fault, the rest ours."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 (see S3Store)

    if isinstance(exc, ClientError):
        return _translate_answer(exc, uri)
    if isinstance(exc, ChecksumMismatch):
        return StagingFault(str(exc))
    if isinstance(exc, BotoCoreError | OSError):
        return StagingFault(f"{uri}: {type(exc).__name__}: {exc}")
    return _translate_engine(exc, uri)


def _translate_answer(exc: Any, uri: ObjectUri) -> Exception:
    """An error answer from S3 to a boto3 call."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if code in _MISSING or status == "404":
        return StagingRejected(f"{uri}: no such object or bucket")
    if code in _DENIED or status == "403":
        return StagingFault(f"{uri}: access denied ({code or status})", retryable=False)
    return StagingFault(f"{uri}: storage error {code or status}: {exc}")


def _translate_engine(exc: Exception, uri: ObjectUri) -> Exception:
    from obstore import exceptions as engine  # noqa: PLC0415

    if isinstance(exc, engine.NotFoundError):
        return StagingRejected(f"{uri}: no such object or bucket")
    if isinstance(exc, engine.PermissionDeniedError | engine.UnauthenticatedError):
        return StagingFault(f"{uri}: access denied ({_first_line(exc)})", retryable=False)
    if isinstance(exc, engine.PreconditionError):
        return StagingFault(f"{uri}: changed while being read (its ETag no longer matches the listing)")
    if isinstance(exc, engine.BaseError):
        return StagingFault(f"{uri}: storage error: {_first_line(exc)}")
    return exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
