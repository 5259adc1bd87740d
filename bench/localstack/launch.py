"""Start LocalStack (`python -m localstack.runtime.main`) with its gateway on 127.0.0.1 only.

Its twisted gateway listens on every address whatever GATEWAY_LISTEN says (it passes only the
port on); the benchmarks must listen on loopback alone, so the endpoint class it uses is
given 127.0.0.1 as its default interface before LocalStack starts. Run with the interpreter of
LocalStack's own virtual environment (see bench/sqs_servers.py).
"""

import runpy
from typing import Any

from twisted.internet import endpoints  # type: ignore[import-not-found]  # LocalStack's own environment

_AnyAddress = endpoints.TCP4ServerEndpoint


class LoopbackEndpoint(_AnyAddress):  # type: ignore[misc,valid-type]
    def __init__(self, reactor: Any, port: int, backlog: int = 50, interface: str = "") -> None:
        super().__init__(reactor, port, backlog, interface or "127.0.0.1")


endpoints.TCP4ServerEndpoint = LoopbackEndpoint
runpy.run_module("localstack.runtime.main", run_name="__main__")
