"""A container's stdin, stdout and stderr over one attach socket.

The engine multiplexes stdout and stderr on the socket (non-TTY mode): each frame is an
8-byte header - stream number, three zero bytes, big-endian payload size - then the payload.
Writing stdin and reading output both go through one `select` loop, so a job that reads
its input slowly while writing a lot never deadlocks against the worker.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
from typing import BinaryIO

HEADER = struct.Struct(">BxxxL")
STDOUT, STDERR = 1, 2
CHUNK = 256 * 1024


class AttachedStreams:
    def __init__(self, sock: socket.socket, stdin: BinaryIO | None, stdout: BinaryIO, stderr: BinaryIO) -> None:
        self.sock = sock
        self.stdin = stdin
        self.sinks = {STDOUT: stdout, STDERR: stderr}
        self.buffer = bytearray()
        self.pending_input = b""
        self.finished = False
        sock.setblocking(False)

    def pump(self, timeout: float) -> None:
        """Move what is ready within `timeout` seconds; `finished` once the output ends."""
        writers = [self.sock] if self.stdin is not None else []
        readable, writable, _ = select.select([self.sock], writers, [], max(0.0, timeout))
        if writable:
            self._send_input()
        if readable:
            self._receive_output()

    def _send_input(self) -> None:
        assert self.stdin is not None
        if not self.pending_input:
            self.pending_input = self.stdin.read(CHUNK)
            if not self.pending_input:
                self._close_input()
                return
        try:
            sent = self.sock.send(self.pending_input)
        except BlockingIOError:
            return
        except OSError:
            # The job ended or closed its stdin without reading all of it: nothing to deliver to.
            self.stdin = None
            return
        self.pending_input = self.pending_input[sent:]

    def _close_input(self) -> None:
        self.stdin = None
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def _receive_output(self) -> None:
        try:
            data = self.sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.finished = True
            self.sock.close()
            return
        self.buffer += data
        while len(self.buffer) >= HEADER.size:
            stream, size = HEADER.unpack_from(self.buffer)
            end = HEADER.size + size
            if len(self.buffer) < end:
                break
            sink = self.sinks.get(stream)
            if sink is not None:
                sink.write(self.buffer[HEADER.size : end])
            del self.buffer[:end]

    def close(self) -> None:
        if not self.finished:
            self.finished = True
            self.sock.close()
