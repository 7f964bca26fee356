"""The controllers of the simulated cluster, each a level-triggered pass over the store.

Deployments own one ReplicaSet per pod template (a template change scales the old ones to zero at
once: rolling-update pacing is not simulated); ReplicaSets keep their pod count; StatefulSets keep
ordinal pods that come back with the same name and a new UID (OrderedReady: one at a time, each
after the previous is Ready); DaemonSets keep one pod per eligible node; the garbage collector
removes dependents of deleted owners and pods of deleted nodes; the disruption controller keeps
PDB status; the endpoints controller keeps Endpoints for Services.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import defaultdict
from typing import TYPE_CHECKING

from nodeswap.sandbox.kube import scheduling
from nodeswap.sandbox.kube.disruption import (
    UNMANAGED_PODS,
    ScaleUnknown,
    budget_status,
    controller_of,
    is_ready,
)
from nodeswap.sandbox.kube.patch import merge_patch
from nodeswap.sandbox.kube.resources import (
    DAEMONSETS,
    DEPLOYMENTS,
    ENDPOINTS,
    EVENTS,
    NODES,
    PDBS,
    PODS,
    REPLICASETS,
    SERVICES,
    STATEFULSETS,
    Resource,
)
from nodeswap.sandbox.kube.selectors import label_selector_matcher
from nodeswap.sandbox.kube.store import Object, rfc3339

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


def _owned_by(objects: list[Object]) -> dict[str, list[Object]]:
    owned: dict[str, list[Object]] = defaultdict(list)
    for obj in objects:
        owner = controller_of(obj)
        if owner is not None:
            owned[owner["uid"]].append(obj)
    return owned


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
        "spec": json.loads(json.dumps(template.get("spec") or {})),
    }
    if name:
        pod["metadata"]["name"] = name
    else:
        pod["metadata"]["generateName"] = f"{meta['name']}-"
    if spec_changes:
        pod["spec"] = merge_patch(pod["spec"], spec_changes)
    cluster.store.create(PODS, cluster.defaulted(PODS, pod))


def _template_hash(template: Object) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


# ----- garbage collection -----------------------------------------------------------------------


def collect_garbage(cluster: Cluster) -> None:
    """Dependents whose controller is gone are deleted (background propagation); pods bound to a
    node that no longer exists are removed at once (pod GC)."""
    store = cluster.store
    owners = {
        obj["metadata"]["uid"]
        for resource in (DEPLOYMENTS, REPLICASETS, STATEFULSETS, DAEMONSETS)
        for obj in store.list(resource)
    }
    for replicaset in store.list(REPLICASETS):
        owner = controller_of(replicaset)
        if owner is not None and owner["uid"] not in owners:
            store.remove(REPLICASETS, replicaset["metadata"]["namespace"], replicaset["metadata"]["name"])
    nodes = {node["metadata"]["name"] for node in store.list(NODES)}
    for pod in store.list(PODS):
        meta, owner = pod["metadata"], controller_of(pod)
        node = pod["spec"].get("nodeName")
        if node and node not in nodes:
            store.remove(PODS, meta["namespace"], meta["name"])
        elif (
            owner is not None
            and owner["uid"] not in owners
            and owner.get("kind") in ("ReplicaSet", "StatefulSet", "DaemonSet")
            and "deletionTimestamp" not in meta
        ):
            cluster.delete(PODS, meta["namespace"], meta["name"], {})


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


def deployments(cluster: Cluster) -> None:
    store = cluster.store
    owned = _owned_by(store.list(REPLICASETS))
    for deployment in store.list(DEPLOYMENTS):
        meta, spec = deployment["metadata"], deployment["spec"]
        template_hash = _template_hash(spec.get("template", {}))
        name = f"{meta['name']}-{template_hash}"
        replicasets = owned.get(meta["uid"], [])
        current = next((rs for rs in replicasets if rs["metadata"]["name"] == name), None)
        replicas = spec.get("replicas", 1)
        if current is None:
            template = json.loads(json.dumps(spec.get("template", {})))
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = template_hash
            selector = json.loads(json.dumps(spec.get("selector") or {}))
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
        statuses = [rs.get("status") or {} for rs in owned.get(meta["uid"], [])]
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


def replicasets(cluster: Cluster) -> None:
    store = cluster.store
    owned = _owned_by(store.list(PODS))
    for replicaset in store.list(REPLICASETS):
        meta, spec = replicaset["metadata"], replicaset["spec"]
        active = _active(owned.get(meta["uid"], []))
        missing = spec.get("replicas", 1) - len(active)
        for _ in range(missing):
            _new_pod(cluster, replicaset, spec.get("template", {}))
        if missing < 0:
            # Scale-down deletes unscheduled, then not-ready pods first (controller.ActivePods ordering).
            doomed = sorted(active, key=lambda p: (bool(p["spec"].get("nodeName")), is_ready(p)))[:-missing]
            for pod in doomed:
                cluster.delete(PODS, meta["namespace"], pod["metadata"]["name"], {})
        active = _active(store.list(PODS, meta["namespace"]))
        mine = [p for p in active if (controller_of(p) or {}).get("uid") == meta["uid"]]
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


def statefulsets(cluster: Cluster) -> None:
    store = cluster.store
    for statefulset in store.list(STATEFULSETS):
        meta, spec = statefulset["metadata"], statefulset["spec"]
        replicas = spec.get("replicas", 1)
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        revision = f"{meta['name']}-{_template_hash(spec.get('template', {}))}"
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
        for pod in _active(store.list(PODS, meta["namespace"])):
            owner = controller_of(pod)
            ordinal = int(pod["metadata"].get("labels", {}).get("apps.kubernetes.io/pod-index", -1))
            if owner and owner["uid"] == meta["uid"] and ordinal >= replicas:
                cluster.delete(PODS, meta["namespace"], pod["metadata"]["name"], {})
        mine = [
            p
            for p in _active(store.list(PODS, meta["namespace"]))
            if (controller_of(p) or {}).get("uid") == meta["uid"]
        ]
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


def daemonsets(cluster: Cluster) -> None:
    store = cluster.store
    nodes = store.list(NODES)
    owned = _owned_by(store.list(PODS))
    for daemonset in store.list(DAEMONSETS):
        meta, template = daemonset["metadata"], daemonset["spec"].get("template", {})
        pod_spec = {**(template.get("spec") or {})}
        pod_spec["tolerations"] = [*(pod_spec.get("tolerations") or []), *DAEMON_TOLERATIONS]
        # Every pod the DaemonSet has on a node counts, terminating ones too, so that no replacement
        # starts beside a pod still shutting down; only pods both finished and deleted are left out
        # (daemon controller: getNodesToDaemonPods, podsShouldBeOnNode).
        by_node: dict[str, list[Object]] = defaultdict(list)
        for pod in owned.get(meta["uid"], []):
            finished = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
            if not (finished and "deletionTimestamp" in pod["metadata"]):
                by_node[_daemon_node(pod)].append(pod)
        desired = ready = scheduled = misscheduled = 0
        for node in nodes:
            name = node["metadata"]["name"]
            # New pods need every NoSchedule/NoExecute taint tolerated; running ones only NoExecute.
            should_run = scheduling.matches_node(pod_spec, node) and not scheduling.untolerated(
                pod_spec, node, ("NoSchedule", "NoExecute")
            )
            may_stay = scheduling.matches_node(pod_spec, node) and not scheduling.untolerated(
                pod_spec, node, ("NoExecute",)
            )
            pods = by_node.get(name, [])
            if should_run and not pods:
                _new_pod(cluster, daemonset, template, spec_changes=_pinned(pod_spec, name))
            elif pods and not may_stay:
                for pod in _active(pods):
                    cluster.delete(PODS, meta["namespace"], pod["metadata"]["name"], {})
            desired += should_run
            scheduled += bool(pods) and should_run
            misscheduled += bool(pods) and not should_run
            ready += sum(1 for p in pods if is_ready(p))
        _set_status(
            cluster,
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


def _pinned(spec: Object, node: str) -> Object:
    """DaemonSet pods reach their node through required node affinity on metadata.name."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
    return {"tolerations": spec["tolerations"], "affinity": {"nodeAffinity": affinity}}


def _daemon_node(pod: Object) -> str:
    if pod["spec"].get("nodeName"):
        return str(pod["spec"]["nodeName"])
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    return str(terms[0]["matchFields"][0]["values"][0])


# ----- disruption budgets and endpoints -----------------------------------------------------------


def disruption_budgets(cluster: Cluster) -> None:
    store = cluster.store
    now = store.clock.wall()
    for pdb in store.list(PDBS):
        meta = pdb["metadata"]
        matches = label_selector_matcher(pdb.get("spec", {}).get("selector"), none_matches=True)
        pods = [p for p in store.list(PODS, meta["namespace"]) if matches(p["metadata"].get("labels") or {})]
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


def endpoints(cluster: Cluster) -> None:
    """Endpoints as the endpoints controller keeps them: the selected pods that have an IP, are not
    finished and (unless the Service has publishNotReadyAddresses) are not terminating
    (ShouldPodBeInEndpoints); Ready ones (or all, with publishNotReadyAddresses) in ``addresses``,
    the rest in ``notReadyAddresses``; one subset per set of resolved ports (RepackSubsets)."""
    store = cluster.store
    for service in store.list(SERVICES):
        meta, spec = service["metadata"], service.get("spec") or {}
        selector = spec.get("selector")
        if not selector:
            continue
        publish_all = bool(spec.get("publishNotReadyAddresses"))
        subsets: dict[str, Object] = {}
        for pod in store.list(PODS, meta["namespace"]):
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
