"""The S3 pointer by which the SQS extended clients send a body too large for a message: the
message attribute that marks one, and the pointer's JSON form."""

from __future__ import annotations

import msgspec

# The message attributes by which the extended clients mark a body that is an S3 pointer.
POINTER_SIZE_ATTRIBUTES = ("ExtendedPayloadSize", "SQSLargePayloadSize")


class PointerTarget(msgspec.Struct):
    s3BucketName: str
    s3Key: str


POINTER = msgspec.json.Decoder(tuple[str, PointerTarget])
