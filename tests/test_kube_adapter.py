"""The Kubernetes adapter's reading of API errors, without a server: which refusals `_transient` calls
load (retried) and which are answers (a PodDisruptionBudget's 429, more than one budget's 500), with the
body as the client hands it over, str or bytes (requests made with ``_preload_content=False``); that
`_call` retries a transient refusal with the real backoff, then succeeds or gives up; and how
`Kube.evict` maps each answer of the eviction subresource, a throttling API server and a dropped
connection to an outcome, naming the blocking budget. Bodies are shaped as kube-apiserver sends them
(pkg/registry/core/pod/storage/eviction.go)."""

from __future__ import annotations

import json
import time
from http.client import RemoteDisconnected
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from nodeswap import kube
from nodeswap.errors import OperationError
from nodeswap.kube import Eviction, Kube
from nodeswap.model import Pod


def status(code: int, message: str, reason: str = "", causes: list[dict[str, str]] | None = None) -> str:
    """A metav1.Status as the API server serializes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "code": code,
    }
    if reason:
        body["reason"] = reason
    if causes is not None:
        body["details"] = {"causes": causes}
    return json.dumps(body)


# checkAndDecrement: the budget allows no disruption now.
BUDGET_429 = status(
    429,
    "Cannot evict pod as it would violate the pod's disruption budget.",
    "TooManyRequests",
    [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 3 healthy pods and has 3 currently",
        }
    ],
)
# createTooManyRequestsError: the budget's controller has not caught up with its spec.
PROCESSING_429 = status(
    429,
    "Cannot evict pod as it would violate the pod's disruption budget.",
    "TooManyRequests",
    [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web is still being processed by the server.",
        }
    ],
)
# Create: the pod is selected by more than one budget.
MULTIPLE_PDBS_500 = status(
    500, "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)
# API Priority and Fairness / max-in-flight shed load in plain text, or as a Status without causes.
THROTTLE_429 = "Too many requests, please try again later.\n"
THROTTLE_429_STATUS = status(429, "Too many requests, please try again later.", "TooManyRequests")
INTERNAL_500 = status(500, "Internal error occurred: etcdserver: request timed out", "InternalError")
UNAVAILABLE_503 = status(503, "the server is currently unable to handle the request", "ServiceUnavailable")
# Create: PDB updates kept conflicting; a timeout, worth trying again even though it names a budget.
CONFLICTS_504 = status(504, 'couldn\'t update PodDisruptionBudget "web" due to conflicts', "Timeout")


def refusal(code: int, body: str | bytes | None) -> ApiException:
    exc = ApiException(status=code, reason="refused")
    exc.body = body
    return exc


def both(body: str) -> list[str | bytes]:
    """The body as the client hands it over: decoded, or raw bytes with ``_preload_content=False``."""
    return [body, body.encode()]


TRANSIENT = [
    *[(429, b, False) for b in both(BUDGET_429)],
    *[(429, b, False) for b in both(PROCESSING_429)],
    *[(429, b, True) for b in both(THROTTLE_429)],
    *[(429, b, True) for b in both(THROTTLE_429_STATUS)],
    *[(500, b, False) for b in both(MULTIPLE_PDBS_500)],
    *[(500, b, True) for b in both(INTERNAL_500)],
    *[(503, b, True) for b in both(UNAVAILABLE_503)],
    *[(504, b, True) for b in both(CONFLICTS_504)],
    (503, None, True),
    (503, b"", True),
    (404, status(404, 'pods "web-0" not found', "NotFound").encode(), False),
    (403, status(403, "forbidden", "Forbidden"), False),
]


@pytest.mark.parametrize(
    ("code", "body", "expected"),
    TRANSIENT,
    ids=[f"{c}-{type(b).__name__}-{i}" for i, (c, b, _) in enumerate(TRANSIENT)],
)
def test_transient_verdicts(code: int, body: str | bytes | None, expected: bool) -> None:
    assert kube._transient(refusal(code, body)) is expected


def test_the_network_is_transient_and_other_errors_are_not() -> None:
    assert kube._transient(ProtocolError("Connection aborted.", RemoteDisconnected("closed")))
    assert kube._transient(ConnectionResetError())
    assert not kube._transient(ValueError("not JSON"))


@pytest.mark.parametrize("body", both(BUDGET_429))
def test_messages_read_bytes_as_text(body: str | bytes) -> None:
    exc = refusal(429, body)
    assert kube._message(exc) == "Cannot evict pod as it would violate the pod's disruption budget."
    assert kube._cause(exc) == "The disruption budget web needs 3 healthy pods and has 3 currently"


def test_a_plain_text_or_missing_body_still_gives_a_message() -> None:
    assert kube._message(refusal(429, THROTTLE_429.encode())) == THROTTLE_429.strip()
    assert kube._cause(refusal(429, THROTTLE_429.encode())) == THROTTLE_429.strip()
    assert kube._message(refusal(503, None)) == "refused"  # the HTTP reason
    assert kube._message(refusal(500, b"[1, 2]")) == "[1, 2]"  # JSON, but not a Status


@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits of the real retry policy, recorded instead of slept (tenacity sleeps with time.sleep)."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


class Flaky:
    """A request that fails with ``failures`` in turn, then answers "ok"."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_call_retries_a_transient_bytes_503_then_succeeds(naps: list[float]) -> None:
    request = Flaky(refusal(503, UNAVAILABLE_503.encode()), refusal(503, UNAVAILABLE_503.encode()))
    assert kube._call("list pods", request) == "ok"
    assert request.calls == 3
    assert naps == [0.5, 1.0]  # 0.5 s doubling


def test_call_retries_a_throttling_429_but_not_a_budgets(naps: list[float]) -> None:
    throttled = Flaky(refusal(429, THROTTLE_429.encode()))
    assert kube._call("list pods", throttled) == "ok"
    assert throttled.calls == 2

    budget = Flaky(refusal(429, BUDGET_429.encode()))
    with pytest.raises(OperationError, match="429 Cannot evict pod as it would violate"):
        kube._call("evict default/web-0", budget)
    assert budget.calls == 1


def test_call_gives_up_after_five_attempts_with_the_servers_message(naps: list[float]) -> None:
    request = Flaky(*(refusal(503, UNAVAILABLE_503.encode()) for _ in range(6)))
    with pytest.raises(OperationError) as raised:
        kube._call("list pods", request)
    assert request.calls == 5
    assert len(naps) == 4
    message = str(raised.value)
    assert "list pods: 503 the server is currently unable to handle the request" in message
    assert "b'" not in message  # bytes were decoded, not repr'd


# ----- evict -----------------------------------------------------------------------------------------


POD = Pod("shop", "web-0", "uid-web-0", "node-a", {"app": "web"})


class Core:
    """CoreV1Api's eviction call: records the request, then fails with ``answer`` if it is an error."""

    def __init__(self, answer: BaseException | None) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, client.V1Eviction]] = []

    def create_namespaced_pod_eviction(
        self, name: str, namespace: str, body: client.V1Eviction, _preload_content: bool = True
    ) -> object:
        self.requests.append((name, namespace, body))
        if self.answer is not None:
            raise self.answer
        answer = {"kind": "Status", "status": "Success", "code": 201}
        return answer if _preload_content else SimpleNamespace(data=json.dumps(answer).encode())


def evicting(answer: BaseException | None) -> tuple[Kube, Core]:
    adapter = Kube.__new__(Kube)  # no kubeconfig: only .core is used
    core = Core(answer)
    adapter.core = core
    return adapter, core


EVICTIONS = [
    ("201", None, Eviction.EVICTED, "", None),
    ("404", refusal(404, status(404, 'pods "web-0" not found', "NotFound")), Eviction.GONE, "", None),
    (
        "429-budget",
        refusal(429, BUDGET_429),
        Eviction.BLOCKED,
        "The disruption budget web needs 3 healthy pods and has 3 currently",
        "shop/web",
    ),
    (
        "429-budget-bytes",
        refusal(429, BUDGET_429.encode()),
        Eviction.BLOCKED,
        "The disruption budget web needs 3 healthy pods and has 3 currently",
        "shop/web",
    ),
    (
        "429-budget-processing",
        refusal(429, PROCESSING_429.encode()),
        Eviction.BLOCKED,
        "The disruption budget web is still being processed by the server.",
        "shop/web",
    ),
    (
        "429-throttle-bytes",
        refusal(429, THROTTLE_429.encode()),
        Eviction.THROTTLED,
        "the API server answered 429: Too many requests, please try again later.",
        None,
    ),
    (
        "429-throttle-status",
        refusal(429, THROTTLE_429_STATUS),
        Eviction.THROTTLED,
        "the API server answered 429: Too many requests, please try again later.",
        None,
    ),
    (
        "500-multiple-pdbs",
        refusal(500, MULTIPLE_PDBS_500.encode()),
        Eviction.MISCONFIGURED,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        None,
    ),
    (
        "500-internal",
        refusal(500, INTERNAL_500),
        Eviction.THROTTLED,
        "the API server answered 500: Internal error occurred: etcdserver: request timed out",
        None,
    ),
    (
        "503",
        refusal(503, UNAVAILABLE_503.encode()),
        Eviction.THROTTLED,
        "the API server answered 503: the server is currently unable to handle the request",
        None,
    ),
    (
        "dropped-connection",
        ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection")),
        Eviction.THROTTLED,
        "the API server did not answer: ('Connection aborted.', "
        "RemoteDisconnected('Remote end closed connection'))",
        None,
    ),
]


@pytest.mark.parametrize(
    ("answer", "outcome", "message", "budget"),
    [case[1:] for case in EVICTIONS],
    ids=[case[0] for case in EVICTIONS],
)
def test_evict_outcomes(
    answer: BaseException | None, outcome: Eviction, message: str, budget: str | None
) -> None:
    adapter, core = evicting(answer)
    result = adapter.evict(POD, grace_period=5)
    assert (result.outcome, result.message, result.budget) == (outcome, message, budget)
    ((name, namespace, body),) = core.requests  # one request: evict does not retry, the drain loop does
    assert (name, namespace) == ("web-0", "shop")
    assert body.metadata.name == "web-0"
    assert body.delete_options.grace_period_seconds == 5


def test_a_budget_refusal_without_a_named_budget_is_still_blocked() -> None:
    """A server phrasing the cause otherwise still blocks; only the budget's name is unknown."""
    body = status(429, "Cannot evict pod as it would violate the pod's disruption budget.", "TooManyRequests")
    result = evicting(refusal(429, body.encode()))[0].evict(POD)
    assert (result.outcome, result.budget) == (Eviction.BLOCKED, None)
    assert result.message == "Cannot evict pod as it would violate the pod's disruption budget."


def test_other_refusals_are_errors_that_name_the_pod() -> None:
    adapter, _ = evicting(refusal(403, status(403, "pods/eviction is forbidden", "Forbidden").encode()))
    with pytest.raises(OperationError, match=r"evict shop/web-0: 403 pods/eviction is forbidden"):
        adapter.evict(POD)
