"""The child's word on the job it holds, in memory shared with the supervisor.

Once a child has decoded a body it writes the job's addressing fields here, so that should the
child die the supervisor can name the job and send its result to the right queue without ever
reading the body. Shared memory rather than a pipe message: it costs the loop no wake-up per
job, and the supervisor reads it only after the child is gone, so there is no concurrent writer.
"""

from __future__ import annotations

import ctypes
from typing import Any

import msgspec

# id (256 characters) + service (1024) + reply_to (2048) + queue (256), 4 bytes a character at most, + framing.
NOTICE_BYTES = 16 * 1024
_LENGTH = 4


class JobAccepted(msgspec.Struct, frozen=True):
    message_id: str
    job_id: str
    service: str | None
    reply_to: str | None
    queue: str | None = None  # the job's kind: native or docker


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(JobAccepted)


def new_notice_board(context: Any) -> ctypes.Array[ctypes.c_char]:
    """Shared memory for one slot (`context`: the multiprocessing context children start in)."""
    board: ctypes.Array[ctypes.c_char] = context.RawArray(ctypes.c_char, NOTICE_BYTES)
    return board


def post(board: ctypes.Array[ctypes.c_char], notice: JobAccepted) -> None:
    """Write `notice` (child side). The length goes last, so a torn write reads as nothing."""
    payload = _ENCODER.encode(notice)
    if len(payload) > NOTICE_BYTES - _LENGTH:
        return  # cannot happen within the request's field limits; the supervisor then knows less
    view = memoryview(board).cast("B")
    view[0:_LENGTH] = bytes(_LENGTH)
    view[_LENGTH : _LENGTH + len(payload)] = payload
    view[0:_LENGTH] = len(payload).to_bytes(_LENGTH, "little")


def read(board: ctypes.Array[ctypes.c_char], message_id: str) -> JobAccepted | None:
    """The notice for `message_id`, if the child wrote one (supervisor side, once it is gone)."""
    data = bytes(memoryview(board).cast("B"))
    length = int.from_bytes(data[0:_LENGTH], "little")
    if not 0 < length <= NOTICE_BYTES - _LENGTH:
        return None
    try:
        notice = _DECODER.decode(data[_LENGTH : _LENGTH + length])
    except msgspec.DecodeError:
        return None
    return notice if notice.message_id == message_id else None
