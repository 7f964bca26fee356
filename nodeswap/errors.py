"""The errors nodeswap reports to its users.

    NodeswapError            anything nodeswap explains to the user instead of a traceback
    ├── UsageError           bad input: a flag, a config or scenario file, a missing resource (exit 2)
    │   ├── ScenarioError    a sandbox scenario file that does not parse or validate
    │   ├── Unreachable      an endpoint (AWS, the API server) that never answered cannot be connected to
    │   └── AccessDenied     the credentials' IAM policy lacks an action nodeswap needs (exit 2; once a
    │                        rollout has changed something, its run reports an OperationError instead)
    ├── RefusedError         preflight found causes that would stop the rollout; nothing changed (exit 3)
    ├── Declined             the answer at the confirmation prompt was no; nothing changed (exit 6)
    └── OperationError       the systems refused or failed an operation; state is as reported (exit 1)
        └── RolledBack       a wave failed and was rolled back: the group is consistent again (exit 4)

Every error carries a remedy: the one thing the reader should do next (but Declined: the reader chose).
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_ROLLED_BACK = 4
EXIT_INTERRUPTED_ROLLOUT = 5  # `status`: a rollout is interrupted; continue or abort it
EXIT_DECLINED = 6  # the confirmation was answered no: nothing was changed


class NodeswapError(Exception):
    """An error with a message for the user and the remedy to try next."""

    exit_code = EXIT_FAILURE
    label = "error"  # what the message is, as the CLI prints it: "error: <message>"

    def __init__(self, message: str, remedy: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy


class UsageError(NodeswapError):
    """The user's input is wrong; nothing was changed."""

    exit_code = EXIT_USAGE


class ScenarioError(UsageError):
    """A sandbox scenario file is malformed; nothing was started."""


class Unreachable(UsageError):
    """An endpoint that has not answered once cannot be connected to: a wrong address or a network in the
    way, not a passing fault (``nodeswap.reach``). Raised by the adapters at first contact, at once;
    nothing was changed."""

    def __init__(self, service: str, endpoint: str, cause: str, remedy: str) -> None:
        super().__init__(f"cannot connect to {service} at {endpoint}: {cause}", remedy)
        self.endpoint = endpoint


class AccessDenied(UsageError):
    """AWS refused an action because the credentials' IAM policy does not allow it: the policy must
    change. Raised by the AWS adapter; nothing was changed by the call it refused."""

    def __init__(self, action: str, message: str, grant: str) -> None:
        super().__init__(message, f"{grant}, then re-run")
        self.action = action  # what to grant, as IAM names it: "autoscaling:UpdateAutoScalingGroup"
        self.grant = grant  # the remedy's first half: "grant autoscaling:UpdateAutoScalingGroup to ..."

    def mid_rollout(self, state: str, ways_on: str) -> OperationError:
        """The same denial met once a rollout has changed something: the run stops there (exit 1),
        saying where the group stands and how to go on once the action is granted."""
        return OperationError(f"{self.message}\n{state}", f"{self.grant}; then {ways_on}")


class RefusedError(NodeswapError):
    """Preflight refused to start: each blocker names the object and the remedy."""

    exit_code = EXIT_REFUSED

    def __init__(self, blockers: list[tuple[str, Any]]) -> None:
        lines = [f"  {group}: {b.subject}: {b.cause}\n    fix: {b.remedy}" for group, b in blockers]
        super().__init__(
            "refusing to start; the rollout could not finish without data loss or a violated budget:\n"
            + "\n".join(lines),
            "fix each cause above (or pass the flag it names) and re-run; nothing was changed",
        )
        self.blockers = blockers


class Declined(NodeswapError):
    """The user answered no when asked to confirm: not an error, and nothing was changed."""

    exit_code = EXIT_DECLINED
    label = "declined"

    def __init__(self) -> None:
        super().__init__("nothing was changed")


class OperationError(NodeswapError):
    """An operation against AWS, Kubernetes or the sandbox failed."""


class RolledBack(OperationError):
    """A wave failed and was undone: the group is at its recorded capacity and launches what it did."""

    exit_code = EXIT_ROLLED_BACK
