"""Fault injection: make chosen AWS operations fail the way AWS fails under load.

``throttle`` answers as each service throttles (Auto Scaling: 400 ``Throttling`` "Rate exceeded";
EC2: 503 ``RequestLimitExceeded``), ``internal`` with a 500 and ``unavailable`` with a 503, for a
fraction of matching requests drawn from a seeded generator so that a failing run can be repeated.
botocore's retry handlers classify exactly these codes as retryable (botocore/data/_retry.json).
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape

from nodeswap.sandbox.scenario import FaultError, FaultSpec

# (HTTP status, error code, message) per kind, for EC2 and for the query-protocol services.
_EC2_ERRORS = {
    "throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
    "internal": (500, "InternalError", "An internal error has occurred"),
    "unavailable": (503, "Unavailable", "The server is overloaded and can't handle the request"),
}
_QUERY_ERRORS = {
    "throttle": (400, "Throttling", "Rate exceeded"),
    "internal": (500, "InternalFailure", "An internal error has occurred"),
    "unavailable": (503, "ServiceUnavailable", "Service is unavailable"),
}


@dataclass(frozen=True)
class FaultResponse:
    status: int
    code: str
    body: bytes


def render(service: str, kind: FaultError) -> FaultResponse:
    status, code, message = (_EC2_ERRORS if service == "ec2" else _QUERY_ERRORS)[kind]
    return error_response(service, status, code, message)


def error_response(service: str, status: int, code: str, message: str) -> FaultResponse:
    """An error in the shape its API answers with: EC2's own XML, or the query protocol's."""
    request_id, message = uuid.uuid4(), escape(message)
    if service == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
    else:
        side = "Sender" if status < 500 else "Receiver"
        body = (
            f"<ErrorResponse><Error><Type>{side}</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    return FaultResponse(status, code, body.encode())


class Faults:
    """The active fault rules; the first rule matching a request decides."""

    def __init__(self, rules: list[FaultSpec], seed: int) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.replace(rules)

    def replace(self, rules: list[FaultSpec]) -> None:
        with self._lock:
            self._rules = list(rules)
            self._injected = [0] * len(rules)

    def rules(self) -> list[FaultSpec]:
        with self._lock:
            return list(self._rules)

    def draw(self, api: str, *names: str) -> FaultError | None:
        """The fault for a request known by ``names`` (any one of them may match a rule), if any."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.api != api or not (
                    "*" in rule.operations or any(n in rule.operations for n in names)
                ):
                    continue
                if rule.limit is not None and self._injected[index] >= rule.limit:
                    continue
                if self._random.random() < rule.rate:
                    self._injected[index] += 1
                    return rule.error
                return None
        return None
