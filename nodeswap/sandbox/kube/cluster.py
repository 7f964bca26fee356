"""The simulated cluster behind the sandbox's API server.

Nodes follow the AWS side: an instance that is running joins as a Node after the join delay (name =
its private DNS name, providerID ``aws:///<zone>/<instance-id>``), tainted not-ready until it is Ready.
When an instance shuts down its kubelet stops (its serving pods are lost); the node lifecycle controller
turns the node NotReady and unreachable a grace period later, and once the instance is terminated the
Node is deleted, as the cloud node lifecycle controller does. A deleted Node takes its heartbeat Lease
with it (the Lease's owner); its pods stay, run by its kubelet while the machine runs, until the pod
garbage collector deletes them after its quarantine. The taint eviction controller deletes pods from
nodes with NoExecute taints they do not tolerate. A scheduler binds pending pods; kubelets
run them through ContainerCreating, Running and Ready, and end them after preStop and the grace
period. Controllers (workloads, garbage collection, disruption budgets, endpoints) live in
``controllers``.

Every change to the store is offered to each controller's queue and pokes one coalesced reconcile
pass, run on the sandbox's scheduler thread, which syncs only what the changes queued: the pods a
change concerns, those of a changed node, the objects owning or selecting them. The scheduler keeps
its cache of nodes and their pods up to date change by change.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from nodeswap.sandbox.clock import Scheduler
from nodeswap.sandbox.kube import controllers, errors, scheduling
from nodeswap.sandbox.kube.clone import clone
from nodeswap.sandbox.kube.controllers import NODE, key_of
from nodeswap.sandbox.kube.disruption import judge_eviction, timestamp
from nodeswap.sandbox.kube.observe import Observer
from nodeswap.sandbox.kube.resources import LEASES, NAMESPACES, NODES, PDBS, PODS, Resource
from nodeswap.sandbox.kube.store import Change, Key, Object, Store, rfc3339
from nodeswap.sandbox.scenario import KubernetesSpec

KUBELET_VERSION = "v1.32.0"
DEFAULT_GRACE_SECONDS = 30
# (CPU cores, memory GiB, max pods) by instance type; allocatable leaves the kubelet's reservations.
INSTANCE_TYPES = {
    "t3.medium": (2, 4, 17),
    "m5.large": (2, 8, 29),
    "m5.xlarge": (4, 16, 58),
    "m5.2xlarge": (8, 32, 58),
    "m5.4xlarge": (16, 64, 234),
    "c5.large": (2, 4, 29),
    "r5.large": (2, 16, 29),
}
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# DefaultTolerationSeconds admission: pods tolerate a NotReady/unreachable node for 5 minutes.
DEFAULT_TOLERATIONS = [
    {
        "key": f"node.kubernetes.io/{key}",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    }
    for key in ("not-ready", "unreachable")
]
_SLEEP = re.compile(r"\bsleep\s+([0-9.]+)")
SHUTDOWN_ANNOTATION = "sandbox.nodeswap.io/shutdown-seconds"
NOT_READY_TAINT, UNREACHABLE_TAINT = "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"
NODE_MONITOR_PERIOD_SECONDS = 5.0  # kube-controller-manager --node-monitor-period
PENDING = "pending"  # the index of the pods waiting for the scheduler
_FIELD = {"uid": "UID", "resourceVersion": "ResourceVersion"}  # as the API server names them


@dataclass(frozen=True)
class Machine:
    """What the cluster needs to know of an EC2 instance."""

    instance_id: str
    zone: str
    private_dns: str
    private_ip: str
    instance_type: str
    image_role: str | None


class Cluster:
    def __init__(self, store: Store, scheduler: Scheduler, spec: KubernetesSpec, observer: Observer) -> None:
        self.store, self.scheduler, self.spec, self.observer = store, scheduler, spec, observer
        self._pending = False
        self._dead: set[str] = set()  # nodes whose kubelet is gone
        self._nodes: dict[str, str] = {}  # instance id -> node name, until the instance is terminated
        self._stopped: set[str] = set()  # instance ids that shut down: they never join
        # Taint eviction: pod uid -> when its NoExecute countdown started, and when it runs out.
        self._tainted_since: dict[str, datetime] = {}
        self._taint_timers: dict[str, datetime] = {}
        self._started: set[str] = set()  # pod uids a kubelet has started
        self._ending: dict[str, float] = {}  # pod uid -> grace its termination was scheduled with
        self._pod_ips = (f"10.244.{n // 250}.{n % 250 + 2}" for n in itertools.count())
        # The pods that changes concerned, for taint eviction and the kubelets; the pods found
        # unschedulable, with the placement version and pod resourceVersion they were tried at.
        self._taint_queue: dict[Key, None] = {}
        self._kubelet_queue: dict[Key, None] = {}
        self._unschedulable_at: dict[str, tuple[int, str]] = {}
        self.placement = scheduling.Placement()
        controllers.install_indexes(store)
        store.add_index(PODS, PENDING, lambda pod: [True] if _is_pending(pod) else [])
        self.disruption = controllers.DisruptionBudgets(self)
        # In the order a pass runs them, around taint eviction, the scheduler and the kubelets.
        self._garbage = controllers.GarbageCollector(self)
        self._pod_gc = controllers.PodGarbageCollector(self)
        self._workloads: list[controllers.Controller[Key]] = [
            controllers.Deployments(self),
            controllers.ReplicaSets(self),
            controllers.StatefulSets(self),
            controllers.DaemonSets(self),
        ]
        self._endpoints = controllers.Endpoints(self)
        store.listeners.append(self._changed)
        for namespace in SYSTEM_NAMESPACES:
            store.create(
                NAMESPACES, {"metadata": {"name": namespace}, "spec": {"finalizers": ["kubernetes"]}}
            )

    # ----- the reconcile loop ------------------------------------------------------------------

    def _changed(self, change: Change) -> None:
        self._garbage.changed(change)
        self._pod_gc.changed(change)
        for controller in (*self._workloads, self.disruption, self._endpoints):
            controller.changed(change)
        obj, gone = change.object, change.type == "DELETED"
        if change.resource is PODS:
            self.placement.pod_changed(change.old, None if gone else obj)
            if gone:
                uid = obj["metadata"]["uid"]
                for state in (self._tainted_since, self._taint_timers, self._ending, self._unschedulable_at):
                    state.pop(uid, None)
                self._started.discard(uid)
            else:
                self._taint_queue[key_of(obj)] = self._kubelet_queue[key_of(obj)] = None
        elif change.resource is NODES:
            name = obj["metadata"]["name"]
            on_node = self.pods_on(name)
            self.placement.node_changed(name, None if gone else obj, on_node)
            for pod in on_node:
                self._taint_queue[key_of(pod)] = self._kubelet_queue[key_of(pod)] = None
        elif change.resource is NAMESPACES:
            self.placement.namespace_changed(obj["metadata"]["name"], None if gone else obj)
        self.poke()

    def poke(self) -> None:
        if not self._pending:
            self._pending = True
            self.scheduler.call_later(0, self.reconcile)

    def reconcile(self) -> None:
        self._pending = False
        self._garbage.sync()
        self._pod_gc.sync()
        self._evict_for_taints()
        for controller in self._workloads:
            controller.sync()
        self._schedule()
        self._run_kubelets()
        self.disruption.sync()
        self._endpoints.sync()

    # ----- nodes -------------------------------------------------------------------------------

    def instance_running(self, machine: Machine) -> None:
        if machine.image_role in self.spec.never_join:
            return
        self.scheduler.call_later(self.spec.join_seconds, lambda: self._join(machine))

    def instance_stopping(self, instance_id: str) -> None:
        """The machine shuts down: its kubelet stops at once, and with it the pods it runs (those of a
        Node deleted before too), but the node lifecycle controller only notices once the node's status
        has gone unrenewed for the node monitor grace period."""
        self._stopped.add(instance_id)
        name = self._nodes.get(instance_id)
        if name is None or name in self._dead:
            return
        self._dead.add(name)
        for pod in self.pods_on(name):
            if "deletionTimestamp" not in pod["metadata"] and not controllers.is_daemon(pod):
                self.observer.lost(pod, name, "its node's instance shut down with the pod still serving")
        self.scheduler.call_later(self.spec.node_monitor_grace_seconds, lambda: self._unreachable(name))

    def instance_terminated(self, instance_id: str) -> None:
        """The instance is gone for good: the cloud node lifecycle controller deletes its Node."""
        self.instance_stopping(instance_id)
        name = self._nodes.pop(instance_id, None)
        if name is not None:
            self.scheduler.call_later(self.spec.node_gone_seconds, lambda: self._node_gone(name))

    def _unreachable(self, name: str) -> None:
        """The node lifecycle controller's verdict on a node whose kubelet stopped posting status:
        Ready Unknown, the unreachable taints, and its pods marked not Ready (MarkPodsNotReady)."""
        if self.store.find(NODES, "", name) is None:
            return
        now = rfc3339(self.store.clock)

        def unreachable(node: Object) -> None:
            node["status"]["conditions"] = [
                {
                    **c,
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastTransitionTime": now,
                }
                if c["type"] == "Ready"
                else c
                for c in node["status"]["conditions"]
            ]
            _set_condition_taints(node, "Unknown", now)

        self.store.modify(NODES, "", name, unreachable)
        for pod in self.pods_on(name):
            meta = pod["metadata"]
            self.store.merge(
                PODS,
                meta["namespace"],
                meta["name"],
                {"status": {"conditions": _pod_conditions(ready=False, now=now)}},
            )

    def _join(self, machine: Machine) -> None:
        if (
            machine.instance_id in self._stopped
            or self.store.find(NODES, "", machine.private_dns) is not None
        ):
            return
        cpu, memory_gib, pods = INSTANCE_TYPES.get(machine.instance_type, (2, 8, 29))
        now = rfc3339(self.store.clock)
        node = {
            "metadata": {
                "name": machine.private_dns,
                "labels": {
                    "kubernetes.io/hostname": machine.private_dns,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": machine.zone,
                    "topology.kubernetes.io/region": machine.zone[:-1],
                    "node.kubernetes.io/instance-type": machine.instance_type,
                },
            },
            "spec": {"providerID": f"aws:///{machine.zone}/{machine.instance_id}"},
            "status": {
                "capacity": {"cpu": str(cpu), "memory": f"{memory_gib}Gi", "pods": str(pods)},
                "allocatable": {
                    "cpu": f"{cpu * 1000 - 70}m",
                    "memory": f"{memory_gib * 1024 - 574}Mi",
                    "pods": str(pods),
                },
                "conditions": [
                    _condition("Ready", "False", "KubeletNotReady", "container runtime is starting", now)
                ],
                "addresses": [
                    {"type": "InternalIP", "address": machine.private_ip},
                    {"type": "Hostname", "address": machine.private_dns},
                    {"type": "InternalDNS", "address": machine.private_dns},
                ],
                "nodeInfo": {
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": KUBELET_VERSION,
                    "containerRuntimeVersion": "containerd://1.7.0",
                    "osImage": "Amazon Linux 2023",
                    "kernelVersion": "6.1.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "machineID": machine.instance_id,
                    "systemUUID": machine.instance_id,
                    "bootID": machine.instance_id,
                },
            },
        }
        _set_condition_taints(node, "False", now)  # it registers not Ready, so tainted not-ready
        uid = self.store.create(NODES, node)["metadata"]["uid"]
        self._nodes[machine.instance_id] = machine.private_dns
        # The kubelet's heartbeat Lease (kubectl describe node shows it), owned by its Node so that the
        # garbage collector deletes it with the Node (pkg/kubelet/nodelease: setNodeOwnerFunc);
        # renewals are not simulated.
        owner = {"apiVersion": "v1", "kind": "Node", "name": machine.private_dns, "uid": uid}
        lease = {
            "metadata": {
                "name": machine.private_dns,
                "namespace": "kube-node-lease",
                "ownerReferences": [owner],
            },
            "spec": {"holderIdentity": machine.private_dns, "leaseDurationSeconds": 40, "renewTime": now},
        }
        if self.store.find(LEASES, "kube-node-lease", machine.private_dns) is None:
            self.store.create(LEASES, lease)
        if machine.image_role not in self.spec.never_ready:
            self.scheduler.call_later(
                self.spec.node_ready_seconds, lambda: self._node_ready(machine.private_dns)
            )

    def _node_ready(self, name: str) -> None:
        if name in self._dead or self.store.find(NODES, "", name) is None:
            return
        now = rfc3339(self.store.clock)

        def ready(node: Object) -> None:
            node["status"]["conditions"] = [
                _condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now)
            ]
            _set_condition_taints(node, "True", now)

        self.store.modify(NODES, "", name, ready)

    def _node_gone(self, name: str) -> None:
        """The cloud node lifecycle controller deletes the Node of a terminated instance, but only once
        the Node is not Ready: it skips Ready nodes and looks again every monitor period
        (k8s.io/cloud-provider controllers/nodelifecycle MonitorNodes). The garbage collector then
        removes its Lease, pod GC its pods."""
        node = self.store.find(NODES, "", name)
        if node is not None and _is_ready(node):
            self.scheduler.call_later(NODE_MONITOR_PERIOD_SECONDS, lambda: self._node_gone(name))
            return
        if node is not None:
            self.store.remove(NODES, "", name)

    def kubelet_running(self, name: str) -> bool:
        """The node's kubelet still runs its pods: its machine has not shut down (its Node may be gone)."""
        return name not in self._dead

    def node_alive(self, name: str | None) -> bool:
        if not name or name in self._dead:
            return False
        node = self.store.find(NODES, "", name)
        return node is not None and _is_ready(node)

    def pods_on(self, node: str) -> list[Object]:
        return self.store.indexed(PODS, NODE, node)

    def _evict_for_taints(self) -> None:
        """The taint eviction controller (pkg/controller/tainteviction): a pod on a node with a NoExecute
        taint it does not tolerate is deleted at once; one it tolerates for tolerationSeconds is
        deleted that long after the taint was added. A deletion, not an eviction: no
        PodDisruptionBudget is consulted. Looked at: the pods that changed, those of a node that
        changed, and those whose countdown ran out."""
        queue, self._taint_queue = self._taint_queue, {}
        now = self.store.clock.wall()
        for key in queue:
            pod = self.store.find(PODS, *key)
            if pod is not None:
                self._evict_for_taint(pod, now)

    def _evict_for_taint(self, pod: Object, now: datetime) -> None:
        meta = pod["metadata"]
        node = self.store.find(NODES, "", pod["spec"].get("nodeName") or "")
        grace = None
        taints: list[Object] = []
        if node is not None and "deletionTimestamp" not in meta:
            taints = [t for t in node["spec"].get("taints") or [] if t.get("effect") == "NoExecute"]
            tolerations = pod["spec"].get("tolerations") or []
            grace = scheduling.no_execute_grace(tolerations, taints) if taints else None
        uid = meta["uid"]
        if grace is None:
            # A pod no longer facing a NoExecute taint starts afresh should one come back.
            self._tainted_since.pop(uid, None)
            self._taint_timers.pop(uid, None)
            return
        # The countdown runs from when the taint was added (first seen, if it has no timeAdded) and
        # keeps its start while taints come and go on the node (processPodOnNode).
        added = [timestamp(t["timeAdded"]) for t in taints if t.get("timeAdded")]
        due = self._tainted_since.setdefault(uid, min(added, default=now)) + timedelta(seconds=grace)
        if due > now:
            if self._taint_timers.get(uid) != due:
                self._taint_timers[uid] = due
                self.scheduler.call_later((due - now).total_seconds(), lambda: self._taint_due(key_of(pod)))
            return
        target = _condition(
            "DisruptionTarget",
            "True",
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
            rfc3339(self.store.clock),
        )
        kept = [c for c in pod.get("status", {}).get("conditions") or [] if c["type"] != "DisruptionTarget"]
        self.store.merge(PODS, meta["namespace"], meta["name"], {"status": {"conditions": [*kept, target]}})
        self.delete(PODS, meta["namespace"], meta["name"], {})

    def _taint_due(self, key: Key) -> None:
        self._taint_queue[key] = None
        self.poke()

    # ----- the scheduler -----------------------------------------------------------------------

    def _schedule(self) -> None:
        """Bind the pending pods, oldest first. A pod found unschedulable is tried again once the
        placement or the pod itself has changed (kube-scheduler's unschedulable queue, moved on
        cluster events), on the nodes that changed if the pod did not."""
        pending = self.store.indexed(PODS, PENDING, True)
        # The scheduler knows nodes by what the API shows: one that is not Ready is kept off by its
        # not-ready/unreachable taints (TaintNodesByCondition), not by its condition; a node whose
        # machine died unnoticed still looks fine, as it does to kube-scheduler.
        for pod in sorted(pending, key=lambda p: p["metadata"]["creationTimestamp"]):
            meta = pod["metadata"]
            failed_at, version = self._unschedulable_at.get(meta["uid"], (None, None))
            if version != meta["resourceVersion"]:
                failed_at = None
            elif failed_at == self.placement.version:
                continue
            node = self.placement.choose(pod, failed_at)
            if node is None:
                tried = self._unschedulable(pod, len(self.placement))
                tried_at = (self.placement.version, tried["metadata"]["resourceVersion"])
                self._unschedulable_at[meta["uid"]] = tried_at
                continue
            self._unschedulable_at.pop(meta["uid"], None)
            self._bind(pod, node)
        oldest = min((at for at, _ in self._unschedulable_at.values()), default=self.placement.version)
        self.placement.forget_changes(oldest)

    def _bind(self, pod: Object, node: str) -> None:
        scheduled = [_condition("PodScheduled", "True", "", "", rfc3339(self.store.clock))]
        binding = {"spec": {"nodeName": node}, "status": {"conditions": scheduled}}
        self.store.merge(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], binding)

    def _unschedulable(self, pod: Object, nodes: int) -> Object:
        """Say why the pod waits, in its PodScheduled condition; the pod as it is now."""
        message = (
            f"0/{nodes} nodes are available: no node fits the pod's requests, selectors and tolerations."
        )
        conditions = pod.get("status", {}).get("conditions") or []
        if any(c.get("type") == "PodScheduled" and c.get("message") == message for c in conditions):
            return pod
        now = rfc3339(self.store.clock)
        condition = _condition("PodScheduled", "False", "Unschedulable", message, now)
        return self.store.merge(
            PODS,
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            {"status": {"conditions": [condition]}},
        )

    # ----- kubelets ----------------------------------------------------------------------------

    def _run_kubelets(self) -> None:
        """The kubelets act on the pods that changed and on those of a node that changed."""
        queue, self._kubelet_queue = self._kubelet_queue, {}
        for key in queue:
            pod = self.store.find(PODS, *key)
            if pod is None:
                continue
            meta, node = pod["metadata"], pod["spec"].get("nodeName")
            if "deletionTimestamp" in meta:
                self._terminate(pod)
            elif node and meta["uid"] not in self._started and self.node_alive(node):
                self._start(pod)

    def _start(self, pod: Object) -> None:
        meta = pod["metadata"]
        self._started.add(meta["uid"])
        now = rfc3339(self.store.clock)
        node = self.store.get(NODES, "", pod["spec"]["nodeName"])
        host_ip = next((a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"), "")

        status = {
            "phase": "Pending",
            "hostIP": host_ip,
            "startTime": now,
            "conditions": _pod_conditions(ready=False, now=now),
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": f"{c.get('image', '')}@sha256:{meta['uid'].replace('-', '')}",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                }
                for c in pod["spec"].get("containers", [])
            ],
        }
        # The whole status is the kubelet's: what it does not set now is gone.
        replaced = {**dict.fromkeys(pod.get("status") or {}), **status}
        self.store.merge(PODS, meta["namespace"], meta["name"], {"status": replaced})
        self.scheduler.call_later(
            self.spec.pod_start_seconds, lambda: self._running(meta["namespace"], meta["name"], meta["uid"])
        )

    def _running(self, namespace: str, name: str, uid: str) -> None:
        pod = self.store.find(PODS, namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid or not self.node_alive(pod["spec"].get("nodeName")):
            return
        now = rfc3339(self.store.clock)
        delay = _readiness_delay(pod["spec"])
        ip = next(self._pod_ips)
        running = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "containerStatuses": [
                {**c, "started": True, "ready": False, "state": {"running": {"startedAt": now}}}
                for c in pod["status"]["containerStatuses"]
            ],
        }
        self.store.merge(PODS, namespace, name, {"status": running})
        self.scheduler.call_later(delay, lambda: self._ready(namespace, name, uid))

    def _ready(self, namespace: str, name: str, uid: str) -> None:
        pod = self.store.find(PODS, namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid or not self.node_alive(pod["spec"].get("nodeName")):
            return
        now = rfc3339(self.store.clock)
        ready = {
            "conditions": _pod_conditions(ready=True, now=now),
            "containerStatuses": [{**c, "ready": True} for c in pod["status"]["containerStatuses"]],
        }
        self.store.merge(PODS, namespace, name, {"status": ready})

    def _terminate(self, pod: Object) -> None:
        """A pod being deleted ends after its preStop hook and shutdown, within its grace period."""
        meta = pod["metadata"]
        grace = float(meta.get("deletionGracePeriodSeconds") or 0)
        if self._ending.get(meta["uid"], float("inf")) <= grace:
            return
        node = pod["spec"].get("nodeName")
        if node and (
            not self.kubelet_running(node)
            or (not self.node_alive(node) and self.store.find(NODES, "", node) is not None)
        ):
            return  # the kubelet is gone: the pod stays Terminating until pod GC removes it
        self._ending[meta["uid"]] = grace
        started = meta["uid"] in self._started
        seconds = min(grace, _termination_seconds(pod)) if started else 0.0
        self.scheduler.call_later(seconds, lambda: self._gone(meta["namespace"], meta["name"], meta["uid"]))

    def _gone(self, namespace: str, name: str, uid: str) -> None:
        pod = self.store.find(PODS, namespace, name)
        if pod is not None and pod["metadata"]["uid"] == uid:
            self.store.remove(PODS, namespace, name)
            self._started.discard(uid)
            self._ending.pop(uid, None)

    # ----- API operations with cluster semantics -----------------------------------------------

    def defaulted(self, resource: Resource, obj: Object) -> Object:
        """Defaults and admission the API server applies on create, to a copy of ``obj``."""
        obj = clone(obj)
        if resource is PODS:
            spec = obj.setdefault("spec", {})
            spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("schedulerName", "default-scheduler")
            tolerations = spec.setdefault("tolerations", [])
            for default in DEFAULT_TOLERATIONS:
                if not any(
                    t.get("key") == default["key"] and t.get("effect") == "NoExecute" for t in tolerations
                ):
                    tolerations.append(dict(default))
            obj["status"] = {"phase": "Pending"}
        return controllers.defaulted(resource, obj)

    def delete(self, resource: Resource, namespace: str, name: str, options: Object) -> Object:
        """DELETE: graceful for pods on a live kubelet, finalizers honoured, dependents collected."""
        obj = self.store.get(resource, namespace, name)
        preconditions = options.get("preconditions") or {}
        for key in ("uid", "resourceVersion"):
            if preconditions.get(key) and preconditions[key] != obj["metadata"].get(key):
                raise errors.ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: {_FIELD[key]} in precondition: {preconditions[key]}, "
                    f"{_FIELD[key]} in object meta: {obj['metadata'].get(key)}",
                )
        if options.get("propagationPolicy") == "Orphan":
            controllers.orphan_dependents(self, obj)
        if resource is PODS:
            return self._delete_pod(obj, options.get("gracePeriodSeconds"))
        if obj["metadata"].get("finalizers"):
            now = rfc3339(self.store.clock)
            if "deletionTimestamp" not in obj["metadata"]:
                deleting = {"metadata": {"deletionTimestamp": now, "deletionGracePeriodSeconds": 0}}
                obj = self.store.merge(resource, namespace, name, deleting)
            return obj
        gone = self.store.remove(resource, namespace, name)
        details: Object = {"name": name, "kind": resource.plural, "uid": gone["metadata"]["uid"]}
        if resource.group:
            details["group"] = resource.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _delete_pod(self, pod: Object, grace_option: int | None) -> Object:
        meta = pod["metadata"]
        grace = (
            grace_option
            if grace_option is not None
            else pod["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        )
        grace = max(int(grace), 0)
        node = pod["spec"].get("nodeName")
        phase = pod.get("status", {}).get("phase")
        # Unbound or finished pods, and a zero grace period, delete at once (no kubelet to wait for).
        if grace == 0 or not node or phase in ("Succeeded", "Failed"):
            return self.store.remove(PODS, meta["namespace"], meta["name"])
        current = meta.get("deletionGracePeriodSeconds")
        if current is not None and current <= grace:
            return pod
        when = (self.store.clock.wall() + timedelta(seconds=grace)).strftime("%Y-%m-%dT%H:%M:%SZ")
        deleting = {"metadata": {"deletionTimestamp": when, "deletionGracePeriodSeconds": grace}}
        return self.store.merge(PODS, meta["namespace"], meta["name"], deleting)

    def evict(self, namespace: str, name: str, eviction: Object) -> Object:
        """POST pods/{name}/eviction: the PodDisruptionBudget check, then a graceful delete."""
        # eviction.go: the Eviction must name the pod of the URL; a missing name does not.
        if (eviction.get("metadata") or {}).get("name") != name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        pod = self.store.get(PODS, namespace, name)
        verdict = judge_eviction(pod, self.disruption.selecting(pod))
        if verdict.code == 500:
            raise errors.ApiError(500, "", verdict.message)
        if not verdict.allowed:
            details: Object = {"causes": [{"reason": "DisruptionBudget", "message": verdict.cause}]}
            if verdict.retry_after:
                details["retryAfterSeconds"] = verdict.retry_after
            raise errors.ApiError(429, "TooManyRequests", verdict.message, details)
        if verdict.charge is not None:
            now = rfc3339(self.store.clock)

            def charge(pdb: Object) -> None:
                status = pdb.setdefault("status", {})
                status["disruptionsAllowed"] = status.get("disruptionsAllowed", 0) - 1
                status["disruptedPods"] = {**(status.get("disruptedPods") or {}), name: now}

            self.store.modify(PDBS, namespace, verdict.charge["metadata"]["name"], charge)
        options = eviction.get("deleteOptions") or {}
        self.delete(PODS, namespace, name, options)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _condition(kind: str, status: str, reason: str, message: str, now: str) -> Object:
    condition: Object = {"type": kind, "status": status, "lastTransitionTime": now}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    if (kind == "Ready" and reason.startswith("Kubelet")) or reason == "NodeStatusUnknown":
        condition["lastHeartbeatTime"] = now
    return condition


def _pod_conditions(*, ready: bool, now: str) -> list[Object]:
    flag = "True" if ready else "False"
    reason = "" if ready else "ContainersNotReady"
    return [
        _condition("PodScheduled", "True", "", "", now),
        _condition("Initialized", "True", "", "", now),
        _condition("ContainersReady", flag, reason, "", now),
        _condition("Ready", flag, reason, "", now),
    ]


def _set_condition_taints(node: Object, ready: str, now: str) -> None:
    """The taints the node lifecycle controller keeps in step with the Ready condition: not-ready for
    False, unreachable for Unknown, none for True; NoSchedule keeps new pods off
    (doNoScheduleTaintingPass), NoExecute evicts the pods that do not tolerate it
    (doNoExecuteTaintingPass). A taint already there keeps its timeAdded."""
    wanted = {"False": NOT_READY_TAINT, "Unknown": UNREACHABLE_TAINT}.get(ready)
    current = node["spec"].get("taints") or []
    kept = [t for t in current if t.get("key") not in (NOT_READY_TAINT, UNREACHABLE_TAINT)]
    added = []
    if wanted is not None:
        for effect in ("NoSchedule", "NoExecute"):
            previous = next((t for t in current if (t.get("key"), t.get("effect")) == (wanted, effect)), None)
            # timeAdded "is only written for NoExecute taints" (core/v1 Taint).
            fresh = {"key": wanted, "effect": effect, **({"timeAdded": now} if effect == "NoExecute" else {})}
            added.append(previous or fresh)
    node["spec"]["taints"] = [*kept, *added]
    if not node["spec"]["taints"]:
        del node["spec"]["taints"]


def _is_ready(node: Object) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in node.get("status", {}).get("conditions", [])
    )


def _is_pending(pod: Object) -> bool:
    """Waiting for the scheduler: not bound to a node, not being deleted."""
    return not pod["spec"].get("nodeName") and "deletionTimestamp" not in pod["metadata"]


def _readiness_delay(spec: Object) -> float:
    """When the first readiness probe passes: its initialDelaySeconds (no probe: ready when started)."""
    delays = [
        float((c.get("readinessProbe") or {}).get("initialDelaySeconds", 0))
        for c in spec.get("containers", [])
    ]
    return max(delays, default=0.0)


def _termination_seconds(pod: Object) -> float:
    """preStop (a sleep action or an exec of `sleep N`) plus the app's shutdown after SIGTERM."""
    prestop = 0.0
    for container in pod["spec"].get("containers", []):
        hook = (container.get("lifecycle") or {}).get("preStop") or {}
        if "sleep" in hook:
            prestop = max(prestop, float(hook["sleep"].get("seconds", 0)))
        elif "exec" in hook:
            found = _SLEEP.search(" ".join(hook["exec"].get("command") or []))
            prestop = max(prestop, float(found.group(1)) if found else 0.0)
    shutdown = float((pod["metadata"].get("annotations") or {}).get(SHUTDOWN_ANNOTATION, 0))
    return prestop + shutdown
