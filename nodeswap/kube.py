"""The Kubernetes adapter: the only module that talks to the API server (through the official client).

Reads return nodeswap's model; writes are idempotent (tainting a tainted node, evicting a gone pod);
waits watch instead of polling. Requests the API server refuses for load (429 without a budget, 5xx)
are retried as ``nodeswap.retry`` says; other API errors become nodeswap's errors at this boundary.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3 import Retry
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError, ProxyError, SSLError

from nodeswap import USER_AGENT, parse
from nodeswap import kubeconfig as kubeconfig_file
from nodeswap.errors import OperationError, Unreachable, UsageError
from nodeswap.model import Budget, Node, Pod, Snapshot, Taint
from nodeswap.parse import Kind, Record
from nodeswap.reach import CONNECT_TIMEOUT, failure
from nodeswap.retry import retrying

RETIRING_TAINT = "nodeswap.io/retiring"
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
# On a node that was already cordoned when nodeswap fenced it: un-fencing leaves it cordoned.
CORDONED_BEFORE = "nodeswap.io/cordoned-before"
LOCK_NAMESPACE = "kube-system"
WATCH_SECONDS = 30  # server-side watch timeout; the client gives up on a silent connection after 60 s
T = TypeVar("T")
CONNECTIONS = 24
R = TypeVar("R")


def _transient(exc: BaseException) -> bool:
    """Worth retrying: the API server shedding load (429 without a budget cause, 5xx) or the network.
    The eviction subresource's refusals for a budget (its 429, and its 500 for a pod under more than one)
    are answers, not load: they are not retried."""
    if isinstance(exc, ApiException):
        if exc.status in (429, 500) and _names_budget(exc):
            return False
        return exc.status in (429, 500, 502, 503, 504)
    return isinstance(exc, HTTPError | OSError)


def _throttled(exc: BaseException) -> bool:
    """The API server's own 429 (API Priority and Fairness), which names no budget: waited out as
    throttling, the other transient failures tried a few times (``nodeswap.retry``)."""
    return isinstance(exc, ApiException) and exc.status == 429 and not _names_budget(exc)


_retrying = retrying(throttled=_throttled, transient=_transient)


def _call(what: str, request: Callable[[], T]) -> T:
    """Make a request with retries; what still fails becomes an OperationError naming ``what``."""
    try:
        return _retrying(request)()
    except ApiException as exc:
        raise _refused(what, exc) from exc
    except (HTTPError, OSError) as exc:
        raise OperationError(
            f"could not reach the Kubernetes API server to {what}: {exc}",
            "check --kubeconfig/--context and that the API server is reachable",
        ) from exc


def _unless(statuses: tuple[int, ...], what: str, request: Callable[[], T]) -> T | None:
    """``_call``, but None when the API server answers one of ``statuses``: 404 for a thing already
    gone, 409 for a write another writer got to first. Those are answers, not failures."""
    try:
        return _call(what, request)
    except OperationError as exc:
        if isinstance(exc.__cause__, ApiException) and exc.__cause__.status in statuses:
            return None
        raise


RETRY_LATER = "see the message; re-run the same command when fixed"


def _refused(what: str, exc: ApiException, remedy: str = RETRY_LATER) -> OperationError:
    return OperationError(f"Kubernetes refused to {what}: {exc.status} {_message(exc)}", remedy)


def _message(exc: ApiException) -> str:
    """The Status's message; else the body as sent (a proxy's or API Priority and Fairness's plain
    text); else the HTTP reason."""
    return str(_status(exc).get("message") or _body(exc).strip() or exc.reason or "")


def _body(exc: ApiException) -> str:
    """The response body as text. The client leaves it bytes for a request made with
    ``_preload_content=False`` (see ``_list``), and None when no response came with the exception."""
    body = exc.body
    if body is None:
        return ""
    if isinstance(body, bytes | bytearray):
        return body.decode("utf-8", errors="replace")
    return str(body)


def _status(exc: ApiException) -> dict[str, Any]:
    """The body as a Kubernetes Status; {} when it is not JSON or not an object."""
    try:
        parsed = json.loads(_body(exc) or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _cause(exc: ApiException) -> str:
    """The Status's causes, joined; else its message."""
    causes = (_status(exc).get("details") or {}).get("causes") or []
    return "; ".join(str(c.get("message", "")) for c in causes if isinstance(c, dict)) or _message(exc)


# How the eviction subresource (pkg/registry/core/pod/storage/eviction.go) names a budget: its 429 says
# "Cannot evict pod as it would violate the pod's disruption budget." with a cause of reason
# "DisruptionBudget"; its 500 says "This pod has more than one PodDisruptionBudget, ...". A throttling
# 429 (API Priority and Fairness: "Too many requests, please try again later.") names none.
_NAMES_BUDGET = re.compile(r"disruption budget|DisruptionBudget")
# The budget in a 429's cause: "The disruption budget web needs 3 healthy pods and has 3 currently", or
# "The disruption budget web is still being processed by the server."
_BUDGET_CAUSE = re.compile(r"The disruption budget (\S+) ")


def _names_budget(exc: ApiException) -> bool:
    return _NAMES_BUDGET.search(_body(exc)) is not None


def _budget_in(cause: str, namespace: str) -> str | None:
    """The budget a 429's cause names, as "namespace/name": a PDB selects pods in its own namespace."""
    found = _BUDGET_CAUSE.search(cause)
    return f"{namespace}/{found.group(1)}" if found else None


class Eviction(Enum):
    EVICTED = "evicted"
    GONE = "gone"  # 404: nothing left to evict
    BLOCKED = "blocked"  # 429 naming a PodDisruptionBudget: it allows no disruption now
    THROTTLED = "throttled"  # the API server (429 without a budget, 5xx) or the network says "later"
    MISCONFIGURED = "misconfigured"  # 500: more than one PDB selects the pod


@dataclass(frozen=True)
class EvictionResult:
    outcome: Eviction
    message: str = ""
    budget: str | None = None  # BLOCKED: the budget refusing, "namespace/name", when the cause names it


class Kube:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        configuration = client.Configuration()
        # Connections kept open: the requests a rollout makes at once (run.IN_FLIGHT) and the cache's
        # watches. The default (5 per CPU) would open and drop a connection for each request beyond it.
        configuration.connection_pool_maxsize = CONNECTIONS
        # A connection that cannot be made is not tried again at once by urllib3 (its default: 3 more
        # times, each up to CONNECT_TIMEOUT): at first contact it is an answer (nodeswap.reach), later
        # nodeswap.retry tries again, with a pause between.
        configuration.retries = Retry(total=3, connect=0)
        self.target = kubeconfig_file.load(kubeconfig, context, configuration)
        self.api = client.ApiClient(configuration)
        self.api.user_agent = USER_AGENT
        self._answered = threading.Event()  # the API server has answered once (nodeswap.reach)
        send = self.api.rest_client.request
        self.api.rest_client.request = functools.partial(self._request, send)
        self.core = client.CoreV1Api(self.api)
        self.policy = client.PolicyV1Api(self.api)
        self.leases = client.CoordinationV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def _request(
        self, send: Callable[..., Any], *args: Any, _request_timeout: Any = None, **kwargs: Any
    ) -> Any:
        """Every request the client makes: with CONNECT_TIMEOUT to connect (the client sets none unless
        asked), and until the API server has answered once, a connection it cannot make (or credentials
        it rejects) raised at once as what it is, a wrong address or kubeconfig (``nodeswap.reach``)."""
        try:
            response = send(*args, _request_timeout=_request_timeout or (CONNECT_TIMEOUT, None), **kwargs)
        except HTTPError as exc:
            cause = exc.reason if isinstance(exc, MaxRetryError) else exc
            if not self._answered.is_set() and isinstance(cause, ConnectTimeoutError | SSLError | ProxyError):
                raise Unreachable(
                    "the Kubernetes API server",
                    self.target.server,
                    failure(exc),
                    f"check that the cluster is up and that the server of {self.target.describe()} is its "
                    "API server's address; or choose another context with --context",
                ) from exc
            raise
        except ApiException as exc:
            if exc.status == 401 and not self._answered.is_set():
                raise UsageError(
                    f"the Kubernetes API server at {self.target.server} rejected the credentials of "
                    f"{self.target.describe()}: {_message(exc)}",
                    "renew them (log in again, or re-run the command that wrote the kubeconfig), or choose "
                    "another context with --context",
                ) from exc
            self._answered.set()
            raise
        self._answered.set()
        return response

    # ----- reads -------------------------------------------------------------------------------

    def nodes(self) -> list[Node]:
        return self._list("list nodes", self._lister("nodes"), parse.NODES)[0]

    def pods(self) -> list[Pod]:
        return self._list("list pods", self._lister("pods"), parse.PODS)[0]

    def budgets(self) -> list[Budget]:
        return self._list("list budgets", self._lister("budgets"), parse.BUDGETS)[0]

    def pods_on(self, node: str) -> list[Pod]:
        """The node's pods as the API server has them now (kubectl drain's field selector)."""
        lister = functools.partial(
            self.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={node}"
        )
        return self._list(f"list the pods on {node}", lister, parse.PODS)[0]

    def snapshot(self) -> Snapshot:
        """Everything the planner reads from the cluster, one list per kind."""
        return parse.kept(
            Snapshot(
                nodes=tuple(self.nodes()),
                pods=tuple(self.pods()),
                budgets=tuple(self.budgets()),
                **self.audited(),
            )
        )

    def audited(self) -> dict[str, Any]:
        """What only the plan's audit reads, listed once per command: Services, and the controllers of
        ReplicaSets (a Deployment's pods name their ReplicaSet as owner)."""
        replicasets = self.apps.list_replica_set_for_all_namespaces
        controlled = self._list("list ReplicaSets", replicasets, parse.REPLICASETS)[0]
        services = self._list("list Services", self.core.list_service_for_all_namespaces, parse.SERVICES)[0]
        return {
            "services": tuple(services),
            "controllers": {key: owner for key, owner in controlled if owner is not None},
        }

    def _lister(self, kind: Kind) -> Callable[..., Any]:
        listers: dict[Kind, Callable[..., Any]] = {
            "nodes": self.core.list_node,
            "pods": self.core.list_pod_for_all_namespaces,
            "budgets": self.policy.list_pod_disruption_budget_for_all_namespaces,
        }
        return listers[kind]

    def listed(self, kind: Kind) -> tuple[list[Record], str]:
        """Every object of a kind as its record, and the list's resourceVersion, to watch from."""
        return self._list(f"list {kind}", self._lister(kind), parse.FORMATS[kind])

    def _list(self, what: str, lister: Callable[..., Any], form: parse.Format[Any, R]) -> tuple[list[R], str]:
        """A list response decoded from its bytes straight into records (the client's models would be
        many times slower), with the garbage collector paused while they are built. The body is read
        within the retries: a response cut short is tried again like a refused one."""
        body = _call(what, lambda: lister(_preload_content=False).data)
        with parse.paused:
            return form.listed(body)

    def watched(self, kind: Kind, version: str) -> Iterator[tuple[str, Record | None, str]]:
        """The changes to a kind after ``version``, as (type, record, resourceVersion), ending when the API
        server closes the watch (after WATCH_SECONDS). BOOKMARK events carry only a newer version (their
        record is None). Raises ApiException 410 when ``version`` is too old to resume from: the caller
        lists again."""
        response = self._lister(kind)(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=WATCH_SECONDS * 2,
            _preload_content=False,
        )
        form = parse.FORMATS[kind]
        try:
            for line in response:  # urllib3 splits the stream into lines, as bytes
                if line.strip():
                    yield form.event(line)
        finally:
            response.release_conn()

    # ----- node changes ------------------------------------------------------------------------

    def node(self, name: str) -> Node | None:
        """The node as the API server has it now; None once it is gone."""
        read = functools.partial(self.core.read_node, name, _preload_content=False)
        found = _unless((404,), f"read {name}", lambda: read().data)
        return parse.NODES.one(found) if found is not None else None

    def fence(self, node: Node, run: str) -> None:
        """Cordon the node and taint it NoSchedule (the taint's value: the rollout), so nothing new lands
        on it. Idempotent."""
        self._set_fence(node, run)

    def unfence(self, node: Node) -> None:
        """Remove nodeswap's taint and uncordon the node. Idempotent; a node already gone needs none."""
        self._set_fence(node, None)

    def _set_fence(self, node: Node, run: str | None) -> None:
        """One patch, written from the node as the caller read it (the cache's copy) with its
        resourceVersion as a precondition; a concurrent change (409) is met by reading it again."""
        what = f"{'fence' if run else 'un-fence'} {node.name}"
        current: Node | None = node
        for _ in range(5):
            if current is None:
                return  # gone: nothing to fence or un-fence
            patch = functools.partial(_unread, self.core.patch_node, node.name, _fence_patch(current, run))
            if _unless((404, 409), what, patch) is not None:
                return
            current = self.node(node.name)
        raise OperationError(
            f"{node.name} kept changing while nodeswap tried to {what}", "re-run the same command"
        )

    def annotate(self, node: str, annotations: dict[str, str | None]) -> None:
        """Set (or, with None, remove) annotations; a node already gone needs none."""
        body = {"metadata": {"annotations": annotations}}
        _unless((404,), f"annotate {node}", lambda: _unread(self.core.patch_node, node, body))

    def event(self, node: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the node, so `kubectl describe node` says what nodeswap does to it.
        Best effort: a rollout does not stop for a lost event."""
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{node}.nodeswap-", namespace="default"),
            involved_object=client.V1ObjectReference(kind="Node", name=node, api_version="v1"),
            reason=reason,
            message=message,
            type="Normal",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="nodeswap"),
            reporting_component="nodeswap",
        )
        try:
            _unread(self.core.create_namespaced_event, "default", body)
        except (ApiException, HTTPError, OSError):
            return

    # ----- eviction ----------------------------------------------------------------------------

    def evict(self, pod: Pod, grace_period: int | None = None) -> EvictionResult:
        options = (
            client.V1DeleteOptions(grace_period_seconds=grace_period) if grace_period is not None else None
        )
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace), delete_options=options
        )
        try:
            _unread(self.core.create_namespaced_pod_eviction, pod.name, pod.namespace, body)
        except ApiException as exc:
            if exc.status == 404:
                return EvictionResult(Eviction.GONE)
            if exc.status == 429 and _names_budget(exc):
                cause = _cause(exc)
                return EvictionResult(Eviction.BLOCKED, cause, _budget_in(cause, pod.namespace))
            if exc.status == 500 and _names_budget(exc):
                return EvictionResult(Eviction.MISCONFIGURED, _message(exc))
            if _transient(exc):  # the API server shedding load: not a budget, but also "later"
                return EvictionResult(
                    Eviction.THROTTLED, f"the API server answered {exc.status}: {_message(exc)}"
                )
            raise _refused(
                f"evict {pod.key}", exc, "see the message; re-run the same command when fixed"
            ) from exc
        except (HTTPError, OSError) as exc:
            return EvictionResult(Eviction.THROTTLED, f"the API server did not answer: {exc}")
        return EvictionResult(Eviction.EVICTED)

    # ----- the lock ----------------------------------------------------------------------------

    def lease(self, name: str) -> client.V1Lease | None:
        lease: client.V1Lease | None = _unless(
            (404,), f"read lease {name}", lambda: self.leases.read_namespaced_lease(name, LOCK_NAMESPACE)
        )
        return lease

    def write_lease(self, lease: client.V1Lease, create: bool) -> client.V1Lease | None:
        """Create or replace the lease; None when another writer got there first (409)."""
        name = lease.metadata.name
        written: client.V1Lease | None = _unless(
            (409,),
            f"write lease {name}",
            lambda: (
                self.leases.create_namespaced_lease(LOCK_NAMESPACE, lease)
                if create
                else self.leases.replace_namespaced_lease(name, LOCK_NAMESPACE, lease)
            ),
        )
        return written

    def renew_lease(self, name: str, holder: str) -> bool:
        """Renew the lease while ``holder`` holds it; False once another holds it or it is gone."""
        for _ in range(3):
            lease = self.lease(name)
            if lease is None or lease.spec.holder_identity != holder:
                return False
            lease.spec.renew_time = datetime.now(UTC)
            if self.write_lease(lease, create=False) is not None:
                return True
            # 409: written since it was read, by a write of ours whose answer was lost or by another
            # run; reading it again tells which.
        return False

    def wait_lease_change(self, name: str, version: str, seconds: float) -> None:
        """Return once the lease changes after ``version``, or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        try:
            for _ in watch.Watch().stream(
                self.leases.list_namespaced_lease,
                LOCK_NAMESPACE,
                field_selector=f"metadata.name={name}",
                resource_version=version,
                timeout_seconds=max(1, math.ceil(seconds)),
                _request_timeout=seconds + WATCH_SECONDS,
            ):
                return
        except (ApiException, HTTPError, OSError, ValueError):
            # The API server is struggling: the caller reads the lease again, a second later.
            time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))

    def release_lease(self, name: str, holder: str) -> None:
        """Delete the lease, only while ``holder`` still holds it (a takeover is not undone)."""
        lease = self.lease(name)
        if lease is None or lease.spec.holder_identity != holder:
            return
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=lease.metadata.resource_version)
        )
        _unless(
            (404, 409),
            f"release lock {name}",
            lambda: self.leases.delete_namespaced_lease(name, LOCK_NAMESPACE, body=options),
        )

    # ----- the rollout record ------------------------------------------------------------------

    def config_map(self, name: str) -> dict[str, str] | None:
        found = _unless(
            (404,),
            f"read ConfigMap {name}",
            lambda: self.core.read_namespaced_config_map(name, LOCK_NAMESPACE),
        )
        return dict(found.data or {}) if found is not None else None

    def write_config_map(self, name: str, data: dict[str, str], labels: dict[str, str]) -> None:
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)
        what = f"write ConfigMap {LOCK_NAMESPACE}/{name}"
        if _unless((404,), what, lambda: self.core.replace_namespaced_config_map(name, LOCK_NAMESPACE, body)):
            return
        _unless((409,), what, lambda: self.core.create_namespaced_config_map(LOCK_NAMESPACE, body))

    def delete_config_map(self, name: str) -> None:
        _unless(
            (404,),
            f"delete ConfigMap {LOCK_NAMESPACE}/{name}",
            lambda: self.core.delete_namespaced_config_map(name, LOCK_NAMESPACE),
        )


def _fence_patch(node: Node, run: str | None) -> dict[str, Any]:
    """The patch that fences (``run``) or un-fences the node as read. A node someone had cordoned before
    nodeswap fenced it is marked so (CORDONED_BEFORE), and stays cordoned when un-fenced."""
    taints = [t for t in node.taints if t.key != RETIRING_TAINT]
    ours = len(taints) != len(node.taints)
    before = None
    if run is not None:
        taints.append(Taint(RETIRING_TAINT, "NoSchedule", run))
        before = node.annotations.get(CORDONED_BEFORE) or (
            "true" if node.unschedulable and not ours else None
        )
    metadata: dict[str, Any] = {"annotations": {CORDONED_BEFORE: before}}
    if node.resource_version:
        metadata["resourceVersion"] = node.resource_version
    return {
        "metadata": metadata,
        "spec": {
            "unschedulable": run is not None or CORDONED_BEFORE in node.annotations,
            "taints": [t.as_dict() for t in taints],
        },
    }


def _unread(send: Callable[..., Any], *args: Any) -> bytes:
    """A change whose answer nodeswap does not read: its body is taken as bytes, not made into the
    client's models (a Node's takes milliseconds, and a rollout makes thousands of changes)."""
    body: bytes = send(*args, _preload_content=False).data
    return body


def fenced(node: Node) -> bool:
    """Whether nodeswap's taint is on the node."""
    return any(t.key == RETIRING_TAINT for t in node.taints)


def object_name(prefix: str, group: str) -> str:
    """A Kubernetes object name for a group: Auto Scaling names allow characters object names do not,
    so a name that had to change gets a hash of the original, to keep such groups apart."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", group.lower()).strip("-")
    if cleaned != group:
        cleaned = f"{cleaned[:40]}-{hashlib.sha256(group.encode()).hexdigest()[:8]}"
    return f"{prefix}-{cleaned}"
