"""The Kubernetes adapter: the only module that talks to the API server (through the official client).

Reads return nodeswap's model; writes are idempotent (tainting a tainted node, evicting a gone pod);
waits watch instead of polling. API errors become nodeswap's errors at this boundary.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

from nodeswap import USER_AGENT
from nodeswap.errors import OperationError, UsageError
from nodeswap.model import Budget, Node, Owner, Pod, Taint

RETIRING_TAINT = "nodeswap.io/retiring"
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
LOCK_NAMESPACE = "kube-system"


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        raise OperationError(
            f"Kubernetes refused to {what}: {exc.status} {exc.reason}: {_message(exc)}",
            "see the message; re-run when fixed",
        ) from exc
    except (HTTPError, OSError) as exc:
        raise OperationError(
            f"could not reach the Kubernetes API server to {what}: {exc}",
            "check --kubeconfig/--context and that the API server is reachable",
        ) from exc


def _message(exc: ApiException) -> str:
    import json  # noqa: PLC0415 - only on the error path

    try:
        return str(json.loads(exc.body or "{}").get("message", exc.body))
    except ValueError:
        return str(exc.body)


class Eviction(Enum):
    EVICTED = "evicted"
    GONE = "gone"  # 404: nothing left to evict
    BLOCKED = "blocked"  # 429: a budget allows no disruption now (or the server asks to come back)
    MISCONFIGURED = "misconfigured"  # 500: more than one PDB selects the pod


@dataclass(frozen=True)
class EvictionResult:
    outcome: Eviction
    message: str = ""


class Kube:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        configuration = client.Configuration()
        try:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        except (ConfigException, OSError, TypeError) as exc:
            where = kubeconfig or "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
            raise UsageError(
                f"cannot load {where}: {exc}", "pass --kubeconfig FILE and/or --context NAME"
            ) from exc
        self.api = client.ApiClient(configuration)
        self.api.user_agent = USER_AGENT
        self.core = client.CoreV1Api(self.api)
        self.policy = client.PolicyV1Api(self.api)
        self.leases = client.CoordinationV1Api(self.api)

    # ----- reads -------------------------------------------------------------------------------

    def nodes(self) -> list[Node]:
        with _translated("list nodes"):
            items = self.core.list_node().items
        return [_node(n) for n in items]

    def pods(self) -> list[Pod]:
        with _translated("list pods"):
            items = self.core.list_pod_for_all_namespaces().items
        return [_pod(p) for p in items]

    def pods_on(self, node: str) -> list[Pod]:
        with _translated(f"list the pods on {node}"):
            items = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        return [_pod(p) for p in items]

    def budgets(self) -> list[Budget]:
        with _translated("list PodDisruptionBudgets"):
            items = self.policy.list_pod_disruption_budget_for_all_namespaces().items
        return [_budget(b) for b in items]

    # ----- node changes ------------------------------------------------------------------------

    def fence(self, node: str, run: str) -> None:
        """Cordon the node and taint it NoSchedule, so nothing new lands on it. Idempotent."""
        with _translated(f"cordon and taint {node}"):
            current = self.core.read_node(node)
            taints = [t.to_dict() for t in current.spec.taints or [] if t.key != RETIRING_TAINT]
            taints.append({"key": RETIRING_TAINT, "value": run, "effect": "NoSchedule"})
            body = {
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {
                    "unschedulable": True,
                    "taints": [{k: v for k, v in t.items() if v is not None} for t in taints],
                },
            }
            self.core.patch_node(node, body)

    def annotate(self, node: str, key: str, value: str | None) -> None:
        with _translated(f"annotate {node}"):
            try:
                self.core.patch_node(node, {"metadata": {"annotations": {key: value}}})
            except ApiException as exc:
                if exc.status != 404:  # a node already gone needs no annotation
                    raise

    def event(self, node: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the node, so `kubectl describe node` says what nodeswap does to it."""
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
        with _translated(f"record an event on {node}"):
            self.core.create_namespaced_event("default", body)

    # ----- eviction ----------------------------------------------------------------------------

    def evict(self, pod: Pod, grace_period: int | None = None) -> EvictionResult:
        options = (
            client.V1DeleteOptions(grace_period_seconds=grace_period) if grace_period is not None else None
        )
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace), delete_options=options
        )
        try:
            with _translated(f"evict {pod.key}"):
                try:
                    self.core.create_namespaced_pod_eviction(pod.name, pod.namespace, body)
                except ApiException as exc:
                    if exc.status == 404:
                        return EvictionResult(Eviction.GONE)
                    if exc.status == 429:
                        return EvictionResult(Eviction.BLOCKED, _cause(exc))
                    if exc.status == 500:
                        return EvictionResult(Eviction.MISCONFIGURED, _message(exc))
                    raise
        except OperationError:
            raise
        return EvictionResult(Eviction.EVICTED)

    # ----- watching ----------------------------------------------------------------------------

    @contextmanager
    def changes(self) -> Iterator[queue.Queue[str]]:
        """A queue that gets "pods", "nodes" or "budgets" whenever one of them changes: waits block on it
        instead of sleeping. Watches resume from their last version and restart on 410."""
        changed: queue.Queue[str] = queue.Queue()
        stop = threading.Event()
        lists: dict[str, Callable[..., Any]] = {
            "pods": self.core.list_pod_for_all_namespaces,
            "nodes": self.core.list_node,
            "budgets": self.policy.list_pod_disruption_budget_for_all_namespaces,
        }
        threads = [
            threading.Thread(
                target=self._follow, args=(kind, lister, changed, stop), daemon=True, name=f"watch-{kind}"
            )
            for kind, lister in lists.items()
        ]
        for thread in threads:
            thread.start()
        try:
            yield changed
        finally:
            stop.set()

    @staticmethod
    def _follow(
        kind: str, lister: Callable[..., Any], changed: queue.Queue[str], stop: threading.Event
    ) -> None:
        version: str | None = None
        while not stop.is_set():
            try:
                if version is None:
                    version = lister().metadata.resource_version
                    changed.put(kind)
                stream = watch.Watch().stream(lister, resource_version=version, timeout_seconds=30)
                for event in stream:
                    if stop.is_set():
                        return
                    version = event["object"].metadata.resource_version
                    changed.put(kind)
            except ApiException as exc:
                if exc.status != 410:
                    stop.wait(1.0)  # the API server is struggling: back off before watching again
                version = None
            except (HTTPError, OSError, ValueError):
                stop.wait(1.0)
                version = None

    # ----- the lock ----------------------------------------------------------------------------

    def lease(self, name: str) -> client.V1Lease | None:
        try:
            with _translated(f"read lease {name}"):
                try:
                    lease: client.V1Lease = self.leases.read_namespaced_lease(name, LOCK_NAMESPACE)
                except ApiException as exc:
                    if exc.status == 404:
                        return None
                    raise
        except OperationError:
            raise
        return lease

    def write_lease(self, lease: client.V1Lease, create: bool) -> client.V1Lease | None:
        """Create or replace the lease; None when another writer got there first (409)."""
        try:
            if create:
                written: client.V1Lease = self.leases.create_namespaced_lease(LOCK_NAMESPACE, lease)
            else:
                written = self.leases.replace_namespaced_lease(lease.metadata.name, LOCK_NAMESPACE, lease)
        except ApiException as exc:
            if exc.status == 409:
                return None
            with _translated("write the rollout lock"):
                raise
        return written

    def delete_lease(self, name: str) -> None:
        try:
            self.leases.delete_namespaced_lease(name, LOCK_NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                with _translated("release the rollout lock"):
                    raise


def _cause(exc: ApiException) -> str:
    import json  # noqa: PLC0415

    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.body).strip()
    causes = (body.get("details") or {}).get("causes") or []
    return "; ".join(c.get("message", "") for c in causes) or str(body.get("message", ""))


def _node(raw: client.V1Node) -> Node:
    conditions = raw.status.conditions or [] if raw.status else []
    return Node(
        name=raw.metadata.name,
        provider_id=raw.spec.provider_id or "",
        ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
        unschedulable=bool(raw.spec.unschedulable),
        taints=tuple(Taint(t.key, t.effect, t.value or "") for t in raw.spec.taints or []),
        labels=dict(raw.metadata.labels or {}),
    )


def _pod(raw: client.V1Pod) -> Pod:
    meta = raw.metadata
    controller = next((o for o in meta.owner_references or [] if o.controller), None)
    conditions = raw.status.conditions or [] if raw.status else []
    return Pod(
        namespace=meta.namespace,
        name=meta.name,
        uid=meta.uid,
        node=raw.spec.node_name,
        labels=dict(meta.labels or {}),
        annotations=dict(meta.annotations or {}),
        owner=Owner(controller.kind, controller.name) if controller else None,
        phase=raw.status.phase if raw.status else "Pending",
        ready=any(c.type == "Ready" and c.status == "True" for c in conditions),
        deleting=meta.deletion_timestamp is not None,
        empty_dir=any(v.empty_dir is not None for v in raw.spec.volumes or []),
        mirror="kubernetes.io/config.mirror" in (meta.annotations or {}),
    )


def _budget(raw: client.V1PodDisruptionBudget) -> Budget:
    status = raw.status
    selector = raw.spec.selector
    return Budget(
        namespace=raw.metadata.namespace,
        name=raw.metadata.name,
        selector=client.ApiClient().sanitize_for_serialization(selector) if selector is not None else None,
        min_available=raw.spec.min_available,
        max_unavailable=raw.spec.max_unavailable,
        expected_pods=status.expected_pods if status else 0,
        current_healthy=status.current_healthy if status else 0,
        desired_healthy=status.desired_healthy if status else 0,
        disruptions_allowed=status.disruptions_allowed if status else 0,
    )
