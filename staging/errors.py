"""Staging failures, split by who is at fault."""


class StagingRejected(Exception):
    """The message asks for something it may not have or that does not exist: `rejected`."""


class StagingFault(Exception):
    """Storage or the local disk failed: a system `error`.

    `retryable` is False when another attempt cannot help (access denied, inputs larger than
    the worker allows): the error is then final at once.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
