"""A loopback TCP proxy for tests and benchmarks: a server that goes down and comes back, answers
late, or loses its answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from testkit.moto_server import free_port


class TcpProxy:
    """Forwards a loopback port to another port or a unix socket; `stop()` makes it refuse
    connections, like a server that went down, and `start()` brings it back on the same port.
    With `latency_s`, every piece of an answer reaches the client that much later (a slow server).
    With `drop_answers` set, requests go through but each answer is lost: the client's
    connection is closed instead. `requests` holds what clients sent."""

    def __init__(self, target: int | str, latency_s: float = 0.0) -> None:
        """`target`: a loopback port, or the path of a unix socket (e.g. a Docker engine's)."""
        self.target = target
        self.latency_s = latency_s
        self.drop_answers = False
        self.requests: list[bytes] = []
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            listener.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.close()
                continue
            for end in (client, upstream):  # no Nagle: a request's second piece must not wait for an ACK
                if end.family != socket.AF_UNIX:
                    end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile: this one must not get through
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
            threading.Thread(target=self._forward_requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._forward_answers, args=(upstream, client), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.target, int):
            return socket.create_connection(("127.0.0.1", self.target))
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(self.target)
        return upstream

    def _forward_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        self._pump(client, upstream, self.requests.append)

    def _forward_answers(self, upstream: socket.socket, client: socket.socket) -> None:
        def delay_or_drop(_: bytes) -> None:
            time.sleep(self.latency_s)  # the latency asked for, not a wait on a condition
            if self.drop_answers:
                client.shutdown(socket.SHUT_RDWR)  # the answer lost on the way

        self._pump(upstream, client, delay_or_drop)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, seen: Callable[[bytes], None]) -> None:
        try:
            while data := source.recv(65536):
                seen(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
