"""The errors nodeswap reports to its users.

    NodeswapError            anything nodeswap explains to the user instead of a traceback
    ├── UsageError           bad input: a flag, a config or scenario file, a missing resource (exit 2)
    │   └── ScenarioError    a sandbox scenario file that does not parse or validate
    └── OperationError       the systems refused or failed an operation; state is as reported (exit 1)

Every error carries a remedy: the one thing the reader should do next.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3


class NodeswapError(Exception):
    """An error with a message for the user and the remedy to try next."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy


class UsageError(NodeswapError):
    """The user's input is wrong; nothing was changed."""

    exit_code = EXIT_USAGE


class ScenarioError(UsageError):
    """A sandbox scenario file is malformed; nothing was started."""


class OperationError(NodeswapError):
    """An operation against AWS, Kubernetes or the sandbox failed."""
