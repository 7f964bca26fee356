"""The controllers of the simulated cluster, each a work queue over the store, as kube-controller-manager's.

Every change to the store is offered to each controller (``changed``), which queues the keys of the
objects whose state that change may move; once per reconcile pass it syncs just those (``sync``).
Syncing is level-triggered: an object is read as it is now, with what it owns (found through the
store's indexes), and brought where it should be, so a pass costs what changed, not the size of the
cluster. What a pass itself changes is synced in the next pass.

Deployments own one ReplicaSet per pod template (a template change scales the old ones to zero at
once: rolling-update pacing is not simulated); ReplicaSets keep their pod count; StatefulSets keep
ordinal pods that come back with the same name and a new UID (OrderedReady: one at a time, each
after the previous is Ready); DaemonSets keep one pod per eligible node; the garbage collector
removes dependents of deleted owners (a node's Lease with its Node); pod GC removes the pods of a
deleted node after its quarantine; the disruption controller keeps PDB status; the endpoints controller
keeps Endpoints for Services.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Generic, TypeVar

from nodeswap.sandbox.kube import scheduling
from nodeswap.sandbox.kube.clone import clone
from nodeswap.sandbox.kube.disruption import (
    DISRUPTED_POD_TIMEOUT,
    UNMANAGED_PODS,
    ScaleUnknown,
    budget_status,
    controller_of,
    is_ready,
    timestamp,
)
from nodeswap.sandbox.kube.patch import merge_patch
from nodeswap.sandbox.kube.resources import (
    DAEMONSETS,
    DEPLOYMENTS,
    ENDPOINTS,
    EVENTS,
    LEASES,
    NODES,
    PDBS,
    PODS,
    REPLICASETS,
    SERVICES,
    STATEFULSETS,
    Resource,
)
from nodeswap.sandbox.kube.selectors import Matcher, label_selector_matcher
from nodeswap.sandbox.kube.store import Change, Key, Object, Store, rfc3339

if TYPE_CHECKING:
    from nodeswap.sandbox.kube.cluster import Cluster

# DaemonSet pods tolerate what would otherwise keep them off or evict them from their node
# (pkg/controller/daemon/util: AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
WORKLOAD_DEFAULTS: dict[str, Object] = {
    "Deployment": {
        "replicas": 1,
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
    },
    "ReplicaSet": {"replicas": 1},
    "StatefulSet": {
        "replicas": 1,
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "revisionHistoryLimit": 10,
    },
    "DaemonSet": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "revisionHistoryLimit": 10,
    },
}


def defaulted(resource: Resource, obj: Object) -> Object:
    defaults = WORKLOAD_DEFAULTS.get(resource.kind)
    if defaults is not None:
        spec = obj.setdefault("spec", {})
        for key, value in defaults.items():
            spec.setdefault(key, value)
    return obj


def is_daemon(pod: Object) -> bool:
    owner = controller_of(pod)
    return owner is not None and owner.get("kind") == "DaemonSet"


# ----- indexes --------------------------------------------------------------------------------------

# Index names (see Store.add_index).
UID, OWNER, NODE, LABEL, DAEMON, SELECTS = "uid", "owner", "node", "label", "daemon", "selects"
OWNERS = (DEPLOYMENTS, REPLICASETS, STATEFULSETS, DAEMONSETS)
ANY_LABELS = "*"  # the SELECTS key of a selector with no matchLabels: it must be tried on every object
QueueKey = TypeVar("QueueKey", bound=Hashable)


def key_of(obj: Object) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _controller_uid(obj: Object) -> list[str]:
    owner = controller_of(obj)
    return [owner["uid"]] if owner is not None else []


def _owner_uids(obj: Object) -> list[str]:
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences") or []]


def _label_keys(obj: Object) -> Iterable[Hashable]:
    meta = obj["metadata"]
    labels = (meta.get("labels") or {}).items()
    # Labels are strings (the API server decodes them as such); anything else is left out.
    return [(meta.get("namespace", ""), key, value) for key, value in labels if isinstance(value, str)]


def _selector_keys(
    namespace: str, match_labels: dict[str, str] | None, *, selects_all: bool
) -> list[Hashable]:
    """Where an object with a label selector is indexed: under one of its matchLabels, whose every
    match carries that label; else under ANY_LABELS when it may select anything, else nowhere."""
    if pair := _indexed_pair(match_labels):
        return [(namespace, *pair)]
    return [(namespace, ANY_LABELS)] if selects_all or match_labels else []


def _indexed_pair(match_labels: dict[str, str] | None) -> tuple[str, str] | None:
    """The matchLabels pair a selector is indexed under (the first in order), if it has one."""
    pairs = [(k, v) for k, v in (match_labels or {}).items() if isinstance(v, str)]
    return min(pairs) if pairs else None


def _pdb_selector_keys(pdb: Object) -> list[Hashable]:
    selector = pdb.get("spec", {}).get("selector")
    # A null selector selects no pod; one with only matchExpressions (or {}) may select any.
    namespace = pdb["metadata"]["namespace"]
    return _selector_keys(namespace, (selector or {}).get("matchLabels"), selects_all=selector is not None)


def _service_selector_keys(service: Object) -> list[Hashable]:
    selector = (service.get("spec") or {}).get("selector") or {}
    return _selector_keys(service["metadata"]["namespace"], selector, selects_all=False)


def _daemon_placement(pod: Object) -> tuple[str, str] | None:
    """(DaemonSet UID, node) for a DaemonSet's pod."""
    owner = controller_of(pod)
    node = _daemon_node(pod) if owner is not None and owner.get("kind") == "DaemonSet" else None
    return (owner["uid"], node) if owner is not None and node is not None else None


def install_indexes(store: Store) -> None:
    """The indexes the controllers look objects up by."""
    for resource in OWNERS:
        store.add_index(resource, UID, lambda obj: [obj["metadata"]["uid"]])
    store.add_index(REPLICASETS, OWNER, _controller_uid)
    store.add_index(PODS, OWNER, _controller_uid)
    store.add_index(LEASES, OWNER, _owner_uids)
    store.add_index(PODS, NODE, lambda pod: [name] if (name := pod["spec"].get("nodeName")) else [])
    store.add_index(PODS, LABEL, _label_keys)
    store.add_index(PODS, DAEMON, lambda pod: [where] if (where := _daemon_placement(pod)) else [])
    store.add_index(PDBS, SELECTS, _pdb_selector_keys)
    store.add_index(SERVICES, SELECTS, _service_selector_keys)


def find_by_uid(store: Store, resource: Resource, uid: str) -> Object | None:
    found = store.indexed(resource, UID, uid)
    return found[0] if found else None


def candidates_selecting(
    store: Store, resource: Resource, namespace: str, labels: dict[str, str]
) -> list[Object]:
    """The objects of ``resource`` (with a SELECTS index) in ``namespace`` whose selector may select
    ``labels``: a superset, each still to be matched."""
    found: dict[Key, Object] = {}
    for key in [*((namespace, k, v) for k, v in labels.items()), (namespace, ANY_LABELS)]:
        for obj in store.indexed(resource, SELECTS, key):
            found[key_of(obj)] = obj
    return list(found.values())


def candidate_pods(store: Store, namespace: str, match_labels: dict[str, str] | None) -> list[Object]:
    """The pods of ``namespace`` a selector with these matchLabels may select: a superset, each still to
    be matched (every pod of the namespace when it has none)."""
    pair = _indexed_pair(match_labels)
    if pair is None:
        return store.list(PODS, namespace)
    return store.indexed(PODS, LABEL, (namespace, *pair))


def _states(change: Change) -> list[Object]:
    """The object before and after the change (the last state of a deleted one)."""
    return [obj for obj in (change.old, change.object) if obj is not None]


def _moved(change: Change, view: Callable[[Object], Hashable]) -> bool:
    """Whether the change created or deleted the object, or changed what ``view`` sees of it."""
    return change.old is None or change.type == "DELETED" or view(change.old) != view(change.object)


def _budget_view(pod: Object) -> Hashable:
    """What the disruption controller reads of a pod."""
    meta = pod["metadata"]
    owner = controller_of(pod) or {}
    labels = tuple((meta.get("labels") or {}).items())
    return labels, is_ready(pod), "deletionTimestamp" in meta, owner.get("uid")


def _endpoint_view(pod: Object) -> Hashable:
    """What the endpoints controller reads of a pod (its containers' ports cannot change)."""
    meta, status = pod["metadata"], pod.get("status") or {}
    labels = tuple((meta.get("labels") or {}).items())
    where = status.get("podIP"), pod["spec"].get("nodeName")
    return labels, where, status.get("phase"), "deletionTimestamp" in meta, is_ready(pod)


def _owned(store: Store, resource: Resource, owner_uid: str) -> list[Object]:
    return store.indexed(resource, OWNER, owner_uid)


def _owner_ref(owner: Object) -> Object:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _active(pods: list[Object]) -> list[Object]:
    return [
        p
        for p in pods
        if "deletionTimestamp" not in p["metadata"]
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]


def _set_status(cluster: Cluster, resource: Resource, obj: Object, status: Object) -> None:
    status = {"observedGeneration": obj["metadata"].get("generation", 1), **status}
    current = obj.get("status") or {}
    if all(current.get(key) == value for key, value in status.items()):
        return
    meta = obj["metadata"]
    cluster.store.merge(resource, meta.get("namespace", ""), meta["name"], {"status": status})


def _new_pod(
    cluster: Cluster,
    owner: Object,
    template: Object,
    *,
    name: str | None = None,
    extra_labels: dict[str, str] | None = None,
    spec_changes: Object | None = None,
) -> None:
    meta = owner["metadata"]
    template_meta = template.get("metadata") or {}
    pod: Object = {
        "metadata": {
            "namespace": meta["namespace"],
            "labels": {**(template_meta.get("labels") or {}), **(extra_labels or {})},
            "annotations": dict(template_meta.get("annotations") or {}),
            "ownerReferences": [_owner_ref(owner)],
        },
        "spec": template.get("spec") or {},  # copied with the rest by defaulted() below
    }
    if name:
        pod["metadata"]["name"] = name
    else:
        pod["metadata"]["generateName"] = f"{meta['name']}-"
    if spec_changes:
        pod["spec"] = merge_patch(pod["spec"], spec_changes)
    cluster.store.create(PODS, cluster.defaulted(PODS, pod))


_template_hashes: dict[tuple[str, int], str] = {}  # (workload uid, generation) -> its template's hash


def _template_hash(workload: Object) -> str:
    """The hash of a workload's pod template, once per generation (which moves with its spec): the
    controllers look it up on every sync, and hashing a template is not cheap."""
    meta = workload["metadata"]
    key = (meta["uid"], meta.get("generation", 0))
    if key not in _template_hashes:
        template = workload["spec"].get("template", {})
        _template_hashes[key] = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    return _template_hashes[key]


class Controller(ABC, Generic[QueueKey]):
    """One controller: a queue of the keys that changes concerned, each synced once per pass."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.store = cluster, cluster.store
        self._queue: dict[QueueKey, None] = {}

    @abstractmethod
    def changed(self, change: Change) -> None:
        """Queue what ``change`` concerns."""

    @abstractmethod
    def sync_one(self, key: QueueKey) -> None:
        """Bring one object (by key; it may be gone) where it should be."""

    def enqueue(self, key: QueueKey) -> None:
        self._queue[key] = None

    def sync(self) -> None:
        queue, self._queue = self._queue, {}
        for key in queue:
            self.sync_one(key)


# ----- garbage collection -----------------------------------------------------------------------


class GarbageCollector(Controller[tuple[Resource, str, str]]):
    """Dependents whose controller is gone are deleted (background propagation), and so is a Lease
    whose owner Node is gone (the kubelet's heartbeat Lease). Checked: a pod, ReplicaSet or Lease that
    changed, the dependents of a deleted owner, the Leases of a deleted node."""

    def changed(self, change: Change) -> None:
        resource, obj = change.resource, change.object
        if resource in (REPLICASETS, PODS, LEASES) and change.type != "DELETED":
            self._check(resource, obj)
        elif resource in OWNERS and change.type == "DELETED":
            for dependent_resource in (REPLICASETS, PODS):
                for dependent in _owned(self.store, dependent_resource, obj["metadata"]["uid"]):
                    self._check(dependent_resource, dependent)
        elif resource is NODES and change.type == "DELETED":
            for lease in self.store.indexed(LEASES, OWNER, obj["metadata"]["uid"]):
                self._check(LEASES, lease)

    def _check(self, resource: Resource, obj: Object) -> None:
        self.enqueue((resource, *key_of(obj)))

    def sync_one(self, key: tuple[Resource, str, str]) -> None:
        resource, namespace, name = key
        obj = self.store.find(resource, namespace, name)
        if obj is None:
            return
        meta, owner = obj["metadata"], controller_of(obj)
        if resource is LEASES:
            refs = meta.get("ownerReferences") or []
            if refs and not any(self._node_exists(ref) for ref in refs):
                self.store.remove(LEASES, namespace, name)
            return
        owner_gone = owner is not None and not any(
            find_by_uid(self.store, kind, owner["uid"]) for kind in OWNERS
        )
        if resource is REPLICASETS:
            if owner_gone:
                self.store.remove(REPLICASETS, namespace, name)
            return
        if (
            owner_gone
            and owner is not None
            and owner.get("kind") in ("ReplicaSet", "StatefulSet", "DaemonSet")
            and "deletionTimestamp" not in meta
        ):
            self.cluster.delete(PODS, namespace, name, {})

    def _node_exists(self, ref: Object) -> bool:
        """The owner a reference names still exists (an owner of a kind other than Node is kept)."""
        if ref.get("kind") != "Node":
            return True
        node = self.store.find(NODES, "", ref.get("name", ""))
        return node is not None and node["metadata"]["uid"] == ref.get("uid")


class PodGarbageCollector(Controller[str]):
    """The pod garbage collector's sweep of orphans (pkg/controller/podgc, gcOrphaned): the pods bound
    to a node that no longer exists are force-deleted once the node has stayed missing for the
    quarantine (quarantineTime, 40 s: the scenario's pod_gc_quarantine_seconds), each first marked
    Failed with a DisruptionTarget condition. Meanwhile they are listed as they were, run by the node's
    kubelet while its machine runs: a pod still serving then is lost when pod GC deletes it. Queued by
    node name, from when a change shows the node missing; the sweep's 20 s period is not simulated."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self._quarantined: set[str] = set()

    def changed(self, change: Change) -> None:
        if change.resource is NODES and change.type == "DELETED":
            self._quarantine(change.object["metadata"]["name"])
        elif change.resource is PODS and change.type != "DELETED":
            node = change.object["spec"].get("nodeName")
            if node and node not in self._quarantined and self.store.find(NODES, "", node) is None:
                self._quarantine(node)

    def _quarantine(self, node: str) -> None:
        if node in self._quarantined:
            return
        self._quarantined.add(node)

        def due() -> None:
            self.enqueue(node)
            self.cluster.poke()

        self.cluster.scheduler.call_later(self.cluster.spec.pod_gc_quarantine_seconds, due)

    def sync_one(self, key: str) -> None:
        if self.store.find(NODES, "", key) is None:
            for pod in self.cluster.pods_on(key):
                self._collect(pod, key)
        # Last: the pods changed above, still bound to the missing node, must not quarantine it again.
        self._quarantined.discard(key)

    def _collect(self, pod: Object, node: str) -> None:
        """markFailedAndDeletePodWithCondition, then the kubelet stops the pod's containers."""
        meta, status = pod["metadata"], pod.get("status") or {}
        if "deletionTimestamp" not in meta and not is_daemon(pod) and self.cluster.kubelet_running(node):
            self.cluster.observer.lost(pod, node, "pod GC deleted it, its Node gone, while it was serving")
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": rfc3339(self.store.clock),
        }
        kept = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
        phase = status.get("phase") if status.get("phase") in ("Succeeded", "Failed") else "Failed"
        marked = {"status": {"phase": phase, "conditions": [*kept, condition]}}
        self.store.merge(PODS, meta["namespace"], meta["name"], marked)
        self.store.remove(PODS, meta["namespace"], meta["name"])


def orphan_dependents(cluster: Cluster, owner: Object) -> None:
    uid = owner["metadata"]["uid"]
    for resource in (REPLICASETS, PODS):
        for obj in cluster.store.list(resource, owner["metadata"].get("namespace")):
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                kept = [r for r in obj["metadata"]["ownerReferences"] if r.get("uid") != uid]
                meta = obj["metadata"]
                cluster.store.merge(
                    resource, meta["namespace"], meta["name"], {"metadata": {"ownerReferences": kept}}
                )


# ----- workloads ------------------------------------------------------------------------------


def _enqueue_owner(controller: Controller[Key], resource: Resource, change: Change) -> None:
    """Queue the ``resource`` object that controls the changed object, before or after the change."""
    for state in _states(change):
        for uid in _controller_uid(state):
            owner = find_by_uid(controller.store, resource, uid)
            if owner is not None:
                controller.enqueue(key_of(owner))


class Deployments(Controller[Key]):
    def changed(self, change: Change) -> None:
        if change.resource is DEPLOYMENTS and change.type != "DELETED":
            self.enqueue(key_of(change.object))
        elif change.resource is REPLICASETS:
            _enqueue_owner(self, DEPLOYMENTS, change)

    def sync_one(self, key: Key) -> None:
        store, cluster = self.store, self.cluster
        deployment = store.find(DEPLOYMENTS, *key)
        if deployment is None:
            return
        meta, spec = deployment["metadata"], deployment["spec"]
        template_hash = _template_hash(deployment)
        name = f"{meta['name']}-{template_hash}"
        replicasets = _owned(store, REPLICASETS, meta["uid"])
        current = next((rs for rs in replicasets if rs["metadata"]["name"] == name), None)
        replicas = spec.get("replicas", 1)
        if current is None:
            template = clone(spec.get("template", {}))
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = template_hash
            selector = clone(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
            store.create(
                REPLICASETS,
                {
                    "metadata": {
                        "name": name,
                        "namespace": meta["namespace"],
                        "labels": {**(template["metadata"].get("labels") or {})},
                        "ownerReferences": [_owner_ref(deployment)],
                    },
                    "spec": {"replicas": replicas, "selector": selector, "template": template},
                },
            )
        elif current["spec"].get("replicas") != replicas:
            store.merge(REPLICASETS, meta["namespace"], name, {"spec": {"replicas": replicas}})
        for old in replicasets:
            if old["metadata"]["name"] != name and old["spec"].get("replicas"):
                store.merge(
                    REPLICASETS, meta["namespace"], old["metadata"]["name"], {"spec": {"replicas": 0}}
                )
        statuses = [rs.get("status") or {} for rs in replicasets]
        new_status = (current or {}).get("status") or {}
        available = sum(s.get("availableReplicas", 0) for s in statuses)
        max_unavailable = spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable", "25%")
        # A Deployment is Available while no more than maxUnavailable (rounded down) replicas are missing.
        tolerated = (
            int(max_unavailable)
            if isinstance(max_unavailable, int)
            else int(replicas * int(str(max_unavailable).rstrip("%")) / 100)
        )
        is_available = available >= replicas - tolerated
        _set_status(
            cluster,
            DEPLOYMENTS,
            deployment,
            {
                "replicas": sum(s.get("replicas", 0) for s in statuses),
                "updatedReplicas": new_status.get("replicas", 0),
                "readyReplicas": sum(s.get("readyReplicas", 0) for s in statuses),
                "availableReplicas": available,
                "unavailableReplicas": max(0, replicas - available),
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True" if is_available else "False",
                        "reason": "MinimumReplicasAvailable"
                        if is_available
                        else "MinimumReplicasUnavailable",
                        "message": "Deployment has minimum availability."
                        if is_available
                        else "Deployment does not have minimum availability.",
                    },
                    {
                        "type": "Progressing",
                        "status": "True",
                        "reason": "NewReplicaSetAvailable",
                        "message": f'ReplicaSet "{name}" has successfully progressed.',
                    },
                ],
            },
        )
        cluster.observer.workload(
            "Deployment",
            meta["namespace"],
            meta["name"],
            sum(s.get("readyReplicas", 0) for s in statuses),
            replicas,
        )


class ReplicaSets(Controller[Key]):
    def changed(self, change: Change) -> None:
        if change.resource is REPLICASETS and change.type != "DELETED":
            self.enqueue(key_of(change.object))
        elif change.resource is PODS:
            _enqueue_owner(self, REPLICASETS, change)

    def sync_one(self, key: Key) -> None:
        store, cluster = self.store, self.cluster
        replicaset = store.find(REPLICASETS, *key)
        if replicaset is None:
            return
        meta, spec = replicaset["metadata"], replicaset["spec"]
        active = _active(_owned(store, PODS, meta["uid"]))
        missing = spec.get("replicas", 1) - len(active)
        for _ in range(missing):
            _new_pod(cluster, replicaset, spec.get("template", {}))
        if missing < 0:
            # Scale-down deletes unscheduled, then not-ready pods first (controller.ActivePods ordering).
            doomed = sorted(active, key=lambda p: (bool(p["spec"].get("nodeName")), is_ready(p)))[:-missing]
            for pod in doomed:
                cluster.delete(PODS, meta["namespace"], pod["metadata"]["name"], {})
        mine = _active(_owned(store, PODS, meta["uid"]))
        ready = sum(1 for p in mine if is_ready(p))
        _set_status(
            cluster,
            REPLICASETS,
            replicaset,
            {
                "replicas": len(mine),
                "fullyLabeledReplicas": len(mine),
                "readyReplicas": ready,
                "availableReplicas": ready,
            },
        )


_ORDINAL_POD = re.compile(r"^(.+)-(0|[1-9][0-9]*)$")


class StatefulSets(Controller[Key]):
    def changed(self, change: Change) -> None:
        if change.resource is STATEFULSETS and change.type != "DELETED":
            self.enqueue(key_of(change.object))
        elif change.resource is PODS:
            _enqueue_owner(self, STATEFULSETS, change)
            # An ordinal's pod blocks or frees its StatefulSet by name, whoever owns it.
            namespace, name = key_of(change.object)
            if (named := _ORDINAL_POD.match(name)) and self.store.find(
                STATEFULSETS, namespace, named.group(1)
            ):
                self.enqueue((namespace, named.group(1)))

    def sync_one(self, key: Key) -> None:
        store, cluster = self.store, self.cluster
        statefulset = store.find(STATEFULSETS, *key)
        if statefulset is None:
            return
        meta, spec = statefulset["metadata"], statefulset["spec"]
        replicas = spec.get("replicas", 1)
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        revision = f"{meta['name']}-{_template_hash(statefulset)}"
        for ordinal in range(replicas):
            name = f"{meta['name']}-{ordinal}"
            pod = store.find(PODS, meta["namespace"], name)
            if pod is None:
                _new_pod(
                    cluster,
                    statefulset,
                    spec.get("template", {}),
                    name=name,
                    extra_labels={
                        "statefulset.kubernetes.io/pod-name": name,
                        "apps.kubernetes.io/pod-index": str(ordinal),
                        "controller-revision-hash": revision,
                    },
                    spec_changes={"hostname": name, "subdomain": spec.get("serviceName", "")},
                )
                if ordered:
                    break
            elif ordered and (not is_ready(pod) or "deletionTimestamp" in pod["metadata"]):
                break  # OrderedReady: the next ordinal waits for this one
        for pod in _active(_owned(store, PODS, meta["uid"])):
            ordinal = int(pod["metadata"].get("labels", {}).get("apps.kubernetes.io/pod-index", -1))
            if ordinal >= replicas:
                cluster.delete(PODS, meta["namespace"], pod["metadata"]["name"], {})
        mine = _active(_owned(store, PODS, meta["uid"]))
        ready = sum(1 for p in mine if is_ready(p))
        _set_status(
            cluster,
            STATEFULSETS,
            statefulset,
            {
                "replicas": len(mine),
                "readyReplicas": ready,
                "currentReplicas": len(mine),
                "updatedReplicas": len(mine),
                "availableReplicas": ready,
                "currentRevision": revision,
                "updateRevision": revision,
            },
        )
        cluster.observer.workload("StatefulSet", meta["namespace"], meta["name"], ready, replicas)


class _Tally:
    """A DaemonSet's counts on each node as last synced (desired, scheduled, misscheduled, ready)
    and their sums, kept as nodes are synced."""

    def __init__(self) -> None:
        self.on_node: dict[str, tuple[int, int, int, int]] = {}
        self.totals = (0, 0, 0, 0)

    def set(self, node: str, counts: tuple[int, int, int, int] | None) -> None:
        old = self.on_node.pop(node, (0, 0, 0, 0))
        if counts is not None:
            self.on_node[node] = counts
        new = counts or (0, 0, 0, 0)
        self.totals = (
            self.totals[0] - old[0] + new[0],
            self.totals[1] - old[1] + new[1],
            self.totals[2] - old[2] + new[2],
            self.totals[3] - old[3] + new[3],
        )


class DaemonSets(Controller[Key]):
    """Per DaemonSet, the nodes to look at again: a node change concerns every DaemonSet on that node,
    a daemon pod's change its own node, a DaemonSet's change all nodes. The status sums what was
    last seen on each node."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self._nodes: dict[Key, set[str] | None] = {}  # queued nodes per DaemonSet; None: all of them
        self._tallies: dict[Key, _Tally] = {}

    def changed(self, change: Change) -> None:
        if change.resource is DAEMONSETS:
            key = key_of(change.object)
            if change.type == "DELETED":
                self._tallies.pop(key, None)
            elif change.old is None or change.old.get("spec") != change.object.get("spec"):
                # The controller's own status writes change nothing it decides on: each node is
                # looked at again as its node or daemon pods change.
                self._queue_nodes(key, None)
        elif change.resource is NODES:
            for daemonset in self.store.list(DAEMONSETS):
                self._queue_nodes(key_of(daemonset), {change.object["metadata"]["name"]})
        elif change.resource is PODS:
            for state in _states(change):
                if (where := _daemon_placement(state)) is not None:
                    owner = find_by_uid(self.store, DAEMONSETS, where[0])
                    if owner is not None:
                        self._queue_nodes(key_of(owner), {where[1]})

    def _queue_nodes(self, key: Key, nodes: set[str] | None) -> None:
        queued = self._nodes.get(key, set())
        self._nodes[key] = None if queued is None or nodes is None else queued | nodes
        self.enqueue(key)

    def sync_one(self, key: Key) -> None:
        store = self.store
        nodes = self._nodes.pop(key)
        daemonset = store.find(DAEMONSETS, *key)
        if daemonset is None:
            return
        if nodes is None:
            tally = self._tallies[key] = _Tally()
            for node in store.list(NODES):
                tally.set(node["metadata"]["name"], self._sync_node(daemonset, node))
        else:
            tally = self._tallies.setdefault(key, _Tally())
            for name in nodes:
                found = store.find(NODES, "", name)
                tally.set(name, None if found is None else self._sync_node(daemonset, found))
        desired, scheduled, misscheduled, ready = tally.totals
        _set_status(
            self.cluster,
            DAEMONSETS,
            daemonset,
            {
                "desiredNumberScheduled": desired,
                "currentNumberScheduled": scheduled,
                "numberMisscheduled": misscheduled,
                "numberReady": ready,
                "numberAvailable": ready,
                "updatedNumberScheduled": scheduled,
            },
        )

    def _sync_node(self, daemonset: Object, node: Object) -> tuple[int, int, int, int]:
        """Start or remove the DaemonSet's pod on one node; its counts there, as found."""
        meta, template = daemonset["metadata"], daemonset["spec"].get("template", {})
        pod_spec = {**(template.get("spec") or {})}
        pod_spec["tolerations"] = [*(pod_spec.get("tolerations") or []), *DAEMON_TOLERATIONS]
        name = node["metadata"]["name"]
        # Every pod the DaemonSet has on a node counts, terminating ones too, so that no replacement
        # starts beside a pod still shutting down; only pods both finished and deleted are left out
        # (daemon controller: getNodesToDaemonPods, podsShouldBeOnNode).
        pods = [
            pod
            for pod in self.store.indexed(PODS, DAEMON, (meta["uid"], name))
            if not (
                pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
                and "deletionTimestamp" in pod["metadata"]
            )
        ]
        # New pods need every NoSchedule/NoExecute taint tolerated; running ones only NoExecute.
        matches = scheduling.matches_node(pod_spec, node)
        should_run = matches and not scheduling.untolerated(pod_spec, node, ("NoSchedule", "NoExecute"))
        may_stay = matches and not scheduling.untolerated(pod_spec, node, ("NoExecute",))
        if should_run and not pods:
            _new_pod(self.cluster, daemonset, template, spec_changes=_pinned(pod_spec, name))
        elif pods and not may_stay:
            for pod in _active(pods):
                self.cluster.delete(PODS, meta["namespace"], pod["metadata"]["name"], {})
        has = bool(pods)
        return should_run, should_run and has, has and not should_run, sum(1 for p in pods if is_ready(p))


def _pinned(spec: Object, node: str) -> Object:
    """DaemonSet pods reach their node through required node affinity on metadata.name."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
    return {"tolerations": spec["tolerations"], "affinity": {"nodeAffinity": affinity}}


def _daemon_node(pod: Object) -> str | None:
    """The node a DaemonSet pod is bound or pinned to."""
    if pod["spec"].get("nodeName"):
        return str(pod["spec"]["nodeName"])
    affinity = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in affinity.get("nodeSelectorTerms") or []:
        for expression in term.get("matchFields") or []:
            if expression.get("key") == "metadata.name" and expression.get("values"):
                return str(expression["values"][0])
    return None


# ----- disruption budgets and endpoints -----------------------------------------------------------


class DisruptionBudgets(Controller[Key]):
    """The disruption controller: a budget is synced when it changes, when a pod it may select changes
    (before or after the change), when the scale of a controller of its pods changes, and when an
    entry of its disruptedPods expires (the controller's recheck)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self._matchers: dict[str, tuple[int, Matcher]] = {}  # PDB uid -> (generation, its selector)
        self._rechecks: dict[Key, datetime] = {}  # when each budget's next disruptedPods entry expires

    def matcher(self, pdb: Object) -> Matcher:
        meta = pdb["metadata"]
        generation = meta.get("generation", 0)
        cached = self._matchers.get(meta["uid"])
        if cached is None or cached[0] != generation:
            selector = pdb.get("spec", {}).get("selector")
            cached = self._matchers[meta["uid"]] = (
                generation,
                label_selector_matcher(selector, none_matches=True),
            )
        return cached[1]

    def selecting(self, pod: Object) -> list[Object]:
        """The budgets that select ``pod``."""
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        return [
            pdb
            for pdb in candidates_selecting(self.store, PDBS, meta.get("namespace", ""), labels)
            if self.matcher(pdb)(labels)
        ]

    def changed(self, change: Change) -> None:
        resource, obj = change.resource, change.object
        if resource is PDBS:
            if change.type == "DELETED":
                self._matchers.pop(obj["metadata"]["uid"], None)
                self._rechecks.pop(key_of(obj), None)
            else:
                self.enqueue(key_of(obj))
        elif resource is PODS and _moved(change, _budget_view):
            for state in _states(change):
                for pdb in self.selecting(state):
                    self.enqueue(key_of(pdb))
        elif resource in (DEPLOYMENTS, REPLICASETS, STATEFULSETS) and _scale_changed(change):
            for pod in _pods_under(self.store, obj):
                for pdb in self.selecting(pod):
                    self.enqueue(key_of(pdb))

    def sync_one(self, key: Key) -> None:
        cluster, store = self.cluster, self.store
        pdb = store.find(PDBS, *key)
        if pdb is None:
            return
        now = store.clock.wall()
        meta = pdb["metadata"]
        matches = self.matcher(pdb)
        match_labels = (pdb.get("spec", {}).get("selector") or {}).get("matchLabels")
        pods = [
            p
            for p in candidate_pods(store, meta["namespace"], match_labels)
            if matches(p["metadata"].get("labels") or {})
        ]
        try:
            computed = budget_status(pdb, pods, lambda pod: _scale_of(cluster, pod), now)
            status = computed.as_status(meta.get("generation", 1), rfc3339(store.clock))
            if computed.unmanaged_pods:
                _warn_unmanaged(cluster, pdb)
        except ScaleUnknown as exc:
            status = _fail_safe(pdb, str(exc), rfc3339(store.clock))
        old = pdb.get("status") or {}
        keep_time = [c.get("lastTransitionTime") for c in old.get("conditions") or []]
        for condition, when in zip(status.get("conditions") or [], keep_time, strict=False):
            if (old.get("conditions") or [{}])[0].get("status") == condition["status"]:
                condition["lastTransitionTime"] = when
        status = {key: value for key, value in status.items() if value is not None}
        if {k: v for k, v in old.items()} != status:
            store.merge(PDBS, meta["namespace"], meta["name"], {"status": {**dict.fromkeys(old), **status}})
        cluster.observer.pdb(
            meta["namespace"], meta["name"], status.get("currentHealthy", 0), status.get("desiredHealthy", 0)
        )
        self._recheck_at_expiry(key, status.get("disruptedPods") or {}, now)

    def _recheck_at_expiry(self, key: Key, disrupted: dict[str, str], now: datetime) -> None:
        """Sync the budget again when its oldest disruptedPods entry expires (enqueuePdbForRecheck)."""
        if not disrupted:
            self._rechecks.pop(key, None)
            return
        due = min(timestamp(when) for when in disrupted.values()) + DISRUPTED_POD_TIMEOUT
        if self._rechecks.get(key) == due:
            return
        self._rechecks[key] = due

        def recheck() -> None:
            if self._rechecks.get(key) == due:
                self.enqueue(key)
                self.cluster.poke()

        self.cluster.scheduler.call_later((due - now).total_seconds(), recheck)


def _scale_changed(change: Change) -> bool:
    """Whether a workload change can change the scale the disruption controller reads for its pods:
    it was created or deleted, or its replicas or its owners changed."""
    if change.old is None or change.type == "DELETED":
        return True
    old, new = change.old, change.object
    replicas = old.get("spec", {}).get("replicas"), new.get("spec", {}).get("replicas")
    owners = old["metadata"].get("ownerReferences"), new["metadata"].get("ownerReferences")
    return bool(replicas[0] != replicas[1] or owners[0] != owners[1])


def _pods_under(store: Store, workload: Object) -> list[Object]:
    """The pods a Deployment (through its ReplicaSets), ReplicaSet or StatefulSet controls."""
    uid = workload["metadata"]["uid"]
    if workload["kind"] == "Deployment":
        return [
            pod
            for rs in _owned(store, REPLICASETS, uid)
            for pod in _owned(store, PODS, rs["metadata"]["uid"])
        ]
    return _owned(store, PODS, uid)


def _fail_safe(pdb: Object, message: str, now: str) -> Object:
    """The disruption controller's failSafe: allow no disruption and say why (DisruptionAllowed False,
    reason SyncFailed), leaving the rest of the status, observedGeneration included, as it was."""
    status = copy.deepcopy(pdb.get("status") or {})
    status["disruptionsAllowed"] = 0
    condition = {
        "type": "DisruptionAllowed",
        "status": "False",
        "reason": "SyncFailed",
        "message": message,
        "observedGeneration": status.get("observedGeneration", 0),
        "lastTransitionTime": now,
    }
    others = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"]
    status["conditions"] = [condition, *others]
    return status


def _warn_unmanaged(cluster: Cluster, pdb: Object) -> None:
    """The Warning event the disruption controller records for a budget selecting pods that have no
    controller (getExpectedPodCount); recorded once, where the event recorder would count repeats."""
    meta = pdb["metadata"]
    name = f"{meta['name']}.{hashlib.sha256(meta['uid'].encode()).hexdigest()[:16]}"
    if cluster.store.find(EVENTS, meta["namespace"], name) is not None:
        return
    now = rfc3339(cluster.store.clock)
    selector = json.dumps(pdb.get("spec", {}).get("selector"), sort_keys=True)
    event = {
        "metadata": {"name": name, "namespace": meta["namespace"]},
        "involvedObject": {
            "kind": "PodDisruptionBudget",
            "apiVersion": PDBS.api_version,
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        },
        "reason": "UnmanagedPods",
        "message": UNMANAGED_PODS.format(selector=selector),
        "type": "Warning",
        "source": {"component": "controllermanager"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    cluster.store.create(EVENTS, event)


def _scale_of(cluster: Cluster, pod: Object) -> tuple[str, int]:
    """The UID and replicas of the pod's top controller, as the disruption controller's finders
    resolve them (a ReplicaSet's Deployment, else the ReplicaSet or StatefulSet itself)."""
    owner = controller_of(pod)
    namespace = pod["metadata"]["namespace"]
    kinds = {"ReplicaSet": REPLICASETS, "StatefulSet": STATEFULSETS, "Deployment": DEPLOYMENTS}
    while owner is not None and owner.get("kind") in kinds:
        controller = cluster.store.find(kinds[owner["kind"]], namespace, owner["name"])
        if controller is None:
            break
        parent = controller_of(controller)
        if parent is None or parent.get("kind") not in kinds:
            return controller["metadata"]["uid"], int(controller["spec"].get("replicas", 1))
        owner = parent
    raise ScaleUnknown(f'found no controllers for pod "{pod["metadata"]["name"]}"')


class Endpoints(Controller[Key]):
    """Endpoints as the endpoints controller keeps them: the selected pods that have an IP, are not
    finished and (unless the Service has publishNotReadyAddresses) are not terminating
    (ShouldPodBeInEndpoints); Ready ones (or all, with publishNotReadyAddresses) in ``addresses``,
    the rest in ``notReadyAddresses``; one subset per set of resolved ports (RepackSubsets). A Service
    is synced when it or its Endpoints change, or a pod it selects (before or after the change)."""

    def changed(self, change: Change) -> None:
        resource, obj = change.resource, change.object
        # A Service's own Endpoints changed by anyone else are put back as the Service wants them.
        if (resource is SERVICES and change.type != "DELETED") or (
            resource is ENDPOINTS and self.store.find(SERVICES, *key_of(obj)) is not None
        ):
            self.enqueue(key_of(obj))
        elif resource is PODS:
            selecting = [service for state in _states(change) for service in self._selecting(state)]
            # Most pods are behind no Service: what the pod shows is compared only when one selects it.
            if selecting and _moved(change, _endpoint_view):
                for service in selecting:
                    self.enqueue(key_of(service))

    def _selecting(self, pod: Object) -> list[Object]:
        """The Services that select ``pod``."""
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        return [
            service
            for service in candidates_selecting(self.store, SERVICES, meta["namespace"], labels)
            if all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
        ]

    def sync_one(self, key: Key) -> None:
        store = self.store
        service = store.find(SERVICES, *key)
        if service is None:
            return
        meta, spec = service["metadata"], service.get("spec") or {}
        selector = spec.get("selector")
        if not selector:
            return
        publish_all = bool(spec.get("publishNotReadyAddresses"))
        subsets: dict[str, Object] = {}
        for pod in candidate_pods(store, meta["namespace"], selector):
            labels = pod["metadata"].get("labels") or {}
            if (
                not all(labels.get(k) == v for k, v in selector.items())
                or not pod.get("status", {}).get("podIP")
                or pod["status"].get("phase") in ("Succeeded", "Failed")
                or ("deletionTimestamp" in pod["metadata"] and not publish_all)
            ):
                continue
            ports = _endpoint_ports(service, pod)
            if ports is None:
                continue
            subset = subsets.setdefault(json.dumps(ports, sort_keys=True), {"ports": ports})
            kind = "addresses" if publish_all or is_ready(pod) else "notReadyAddresses"
            subset.setdefault(kind, []).append(_address(pod))
        wanted = list(subsets.values())
        current = store.find(ENDPOINTS, meta["namespace"], meta["name"])
        if current is None:
            store.create(
                ENDPOINTS,
                {
                    "metadata": {
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "labels": dict(meta.get("labels") or {}),
                    },
                    "subsets": wanted,
                },
            )
        elif current.get("subsets") != wanted:
            store.merge(ENDPOINTS, meta["namespace"], meta["name"], {"subsets": wanted})


def _endpoint_ports(service: Object, pod: Object) -> list[Object] | None:
    """The Service's ports with each targetPort resolved for this pod (podutil.FindPort): a number as
    is, a name to the containerPort of that name and protocol; ports that do not resolve are left out,
    and a pod with none is left out (a headless Service without ports lists its pods with none)."""
    service_ports = service.get("spec", {}).get("ports") or []
    if not service_ports:
        return [] if service.get("spec", {}).get("clusterIP") == "None" else None
    resolved = []
    for port in service_ports:
        protocol = port.get("protocol", "TCP")
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, str):
            target = next(
                (
                    p["containerPort"]
                    for c in pod["spec"].get("containers") or []
                    for p in c.get("ports") or []
                    if p.get("name") == target and p.get("protocol", "TCP") == protocol
                ),
                None,
            )
        if target is not None:
            resolved.append(
                {"port": target, "protocol": protocol, **({"name": port["name"]} if port.get("name") else {})}
            )
    return resolved or None


def _address(pod: Object) -> Object:
    meta = pod["metadata"]
    return {
        "ip": pod["status"]["podIP"],
        "nodeName": pod["spec"].get("nodeName"),
        "targetRef": {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        },
    }
