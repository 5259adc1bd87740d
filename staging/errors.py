"""Staging failures, split by who is at fault."""


class StagingRejected(Exception):
    """The message asks for something it may not have or that does not exist: `rejected`."""


class StagingFault(Exception):
    """Storage or the local disk failed: a system `error`, retried."""
