"""How long `nodeswap plan` takes on a large cluster, from the API's JSON to the plan: 2,000 nodes and
60,000 pods, all to be replaced. Issue 12's target: under 3 s of CPU for both.

Run: python benchmarks/plan_scale.py [--nodes 2000] [--pods 60000] [--repeat 3] [--seed 7] [--profile]

Builds a synthetic cluster with a fixed seed, as nodeswap's records: one Auto Scaling group ``workers``
whose instances all run an older launch template version, one DaemonSet pod per node, ~1,500
Deployments (a third with a log-shipping sidecar) and some StatefulSets over ~100 namespaces, ~1,000
PodDisruptionBudgets and ~1,500 Services. Then renders the nodes, pods and budgets as the API server
sends them: the bodies of ``GET /api/v1/nodes``, ``GET /api/v1/pods`` and
``GET /apis/policy/v1/poddisruptionbudgets``, compact JSON with objects of a real one's size and shape
(managedFields, containers with probes, hooks and environment, status with conditions and container
statuses, nodes' images), and checks that parsing them gives the synthetic records back.

Measures the CPU time (time.process_time), ``--repeat`` times each, taking the least:

- ``snapshot_cpu_seconds``: building the snapshot as `nodeswap plan` does (Kube.snapshot): each body
  decoded by nodeswap.parse straight into records (msgspec, only the fields nodeswap reads) with the
  garbage collector paused, then ``Snapshot``, kept out of the collector's reach (``parse.kept``,
  ``gc.freeze``). Services and the ReplicaSets' controllers, which only the audit reads, stay
  synthetic records (they are few). Each run starts as a new process would: the last one's freeze
  undone, its garbage collected;
- ``plan_cpu_seconds_min``: ``plan_group`` on that snapshot, in one wave;
- ``total_cpu_seconds``: the two together, the figure against the target;

and ``plan_group`` once with ``--surge`` instances per wave. Building the synthetic cluster and
rendering its JSON are reported, not part of the total. Prints one JSON object; with ``--profile``,
also on stderr the garbage collector's share of one snapshot building (cProfile charges it to whichever
function allocated) and the top functions of one snapshot building and of one plan by cumulative and
own time. A benchmark, not a test: machines are shared, so compare figures from one run, not against
fixed thresholds.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any, TypeVar

from nodeswap import parse
from nodeswap.model import (
    Budget,
    Group,
    Instance,
    LaunchSpec,
    Node,
    Owner,
    Pod,
    Resources,
    Service,
    Snapshot,
    Taint,
)
from nodeswap.parse import Kind
from nodeswap.plan import GroupPlan, Settings, plan_group

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
ZONE_IDS = {"us-east-1a": "use1-az1", "us-east-1b": "use1-az2", "us-east-1c": "use1-az4"}
INSTANCE_TYPE = "m5.4xlarge"
IMAGE_ID = "ami-0123456789abcdef0"
ALLOCATABLE = Resources(15.89, 60e9, 234)
MI = 2**20
TEMPLATE = {"template_id": "lt-0a1b2c3d4e5f60718", "template_name": "workers"}
HASH = "abc123"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
SCALE_DOWN_CANDIDATE = Taint(
    "DeletionCandidateOfClusterAutoscaler", "PreferNoSchedule", str(int(NOW.timestamp()) - 600)
)
SIDECAR = Resources(0.05, 64 * MI)  # the log shipper beside a third of the Deployments' apps
SIDECAR_IMAGE = "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.2"
# What admission (DefaultTolerationSeconds) gives every pod, and the DaemonSet controller its pods.
DEFAULT_TOLERATIONS = tuple(
    {
        "key": f"node.kubernetes.io/{key}",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    }
    for key in ("not-ready", "unreachable")
)
DAEMONSET_TOLERATIONS = tuple(
    {"key": f"node.kubernetes.io/{key}", "operator": "Exists", "effect": effect}
    for key, effect in (
        ("not-ready", "NoExecute"),
        ("unreachable", "NoExecute"),
        ("disk-pressure", "NoSchedule"),
        ("memory-pressure", "NoSchedule"),
        ("pid-pressure", "NoSchedule"),
        ("unschedulable", "NoSchedule"),
        ("network-unavailable", "NoSchedule"),
    )
)
Json = dict[str, Any]
Bodies = dict[Kind, bytes]
R = TypeVar("R", Node, Pod, Budget)


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _uid(rng: random.Random) -> str:
    return f"{_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}"


def _replicas(rng: random.Random, count: int, total: int) -> list[int]:
    """``count`` replica counts summing to ``total``: mostly small, a long tail of large ones."""
    assert total >= count
    weights = [rng.lognormvariate(0, 1.2) for _ in range(count)]
    scale = total / sum(weights)
    replicas = [max(1, round(w * scale)) for w in weights]
    # Settle the rounding on the largest workloads so the total is exact.
    order = sorted(range(count), key=lambda i: -replicas[i])
    step = 0
    while (gap := total - sum(replicas)) != 0:
        i = order[step % count]
        if gap > 0 or replicas[i] > 1:
            replicas[i] += 1 if gap > 0 else -1
        step += 1
    return replicas


@dataclass(frozen=True)
class Workload:
    """What a workload's pods show in the API's JSON beyond nodeswap's records."""

    kind: str  # the controller: DaemonSet, Deployment or StatefulSet
    app: str
    owner_uid: str  # the pods' owner's: the ReplicaSet's for a Deployment
    image: str
    digest: str
    image_bytes: int
    sidecar: bool
    sleep_action: bool  # the preStop hook is the sleep action, not `sleep N` in a shell


class Cluster:
    """The synthetic cluster, built with one seeded random generator; what only the JSON shows (images,
    addresses, identifiers) comes from a second one, so the records do not depend on it."""

    def __init__(self, nodes: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.looks = random.Random(seed + 1)
        self.instances: list[Instance] = []
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []
        self.budgets: list[Budget] = []
        self.services: list[Service] = []
        self.controllers: dict[str, Owner] = {}
        self.workloads: dict[tuple[str, Owner], Workload] = {}
        for index in range(nodes):
            self._add_node(index)
        self.free = {n.name: ALLOCATABLE for n in self.nodes}
        self.names = [n.name for n in self.nodes]
        self.started = {n.name: n.ready_since or NOW for n in self.nodes}

    def _add_node(self, index: int) -> None:
        rng, zone = self.rng, ZONES[index % len(ZONES)]
        instance_id = f"i-{_hex(rng, 17)}"
        launched = NOW - timedelta(days=30, seconds=rng.uniform(0, 20 * 86400))
        # Whole seconds, as the API's timestamps have them.
        created = (launched + timedelta(seconds=rng.uniform(60, 120))).replace(microsecond=0)
        ip = f"10.{index // 250}.{index % 250}.{rng.randint(1, 254)}"
        name = f"ip-{ip.replace('.', '-')}.ec2.internal"
        self.instances.append(
            Instance(
                instance_id,
                zone,
                "InService",
                True,
                LaunchSpec(**TEMPLATE, version="1"),
                launched_at=launched,
                image_id=IMAGE_ID,
                instance_type=INSTANCE_TYPE,
            )
        )
        self.nodes.append(
            Node(
                name,
                f"aws:///{zone}/{instance_id}",
                ready=True,
                labels={
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/instance-type": INSTANCE_TYPE,
                    "beta.kubernetes.io/os": "linux",
                    "eks.amazonaws.com/capacityType": "ON_DEMAND",
                    "eks.amazonaws.com/nodegroup": "workers",
                    "eks.amazonaws.com/nodegroup-image": IMAGE_ID,
                    "eks.amazonaws.com/sourceLaunchTemplateId": TEMPLATE["template_id"],
                    "eks.amazonaws.com/sourceLaunchTemplateVersion": "1",
                    "failure-domain.beta.kubernetes.io/region": "us-east-1",
                    "failure-domain.beta.kubernetes.io/zone": zone,
                    "k8s.io/cloud-provider-aws": "8f2c6a3e1d7b4c5a9e0f1b2c3d4e5f60",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "node.kubernetes.io/instance-type": INSTANCE_TYPE,
                    "topology.ebs.csi.aws.com/zone": zone,
                    "topology.k8s.aws/zone-id": ZONE_IDS[zone],
                    "topology.kubernetes.io/region": "us-east-1",
                    "topology.kubernetes.io/zone": zone,
                },
                annotations={
                    "alpha.kubernetes.io/provided-node-ip": ip,
                    "csi.volume.kubernetes.io/nodeid": json.dumps({"ebs.csi.aws.com": instance_id}),
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
                # cluster-autoscaler's mark on nodes it may scale down (not one the planner heeds).
                taints=(SCALE_DOWN_CANDIDATE,) if index % 20 == 7 else (),
                allocatable=ALLOCATABLE,
                created_at=created,
                ready_since=created + timedelta(seconds=round(rng.uniform(20, 40))),
            )
        )

    def group(self) -> Group:
        count = len(self.instances)
        return Group(
            "workers",
            min_size=count,
            max_size=count + count // 5,
            desired=count,
            launch=LaunchSpec(**TEMPLATE, version="2"),
            instances=tuple(self.instances),
            zones=ZONES,
            instance_types=(INSTANCE_TYPE,),
        )

    def snapshot(self) -> Snapshot:
        return Snapshot(
            tuple(self.nodes), tuple(self.pods), tuple(self.budgets), tuple(self.services), self.controllers
        )

    def place(self, requests: Resources) -> str:
        """A random node with room for the requests (the least loaded of a few if none has)."""
        tried = [self.rng.choice(self.names) for _ in range(8)]
        free = self.free
        node = next((n for n in tried if requests.within(free[n])), max(tried, key=lambda n: free[n].cpu))
        free[node] = free[node] - requests
        return node

    def add_pod(
        self,
        namespace: str,
        name: str,
        owner: Owner,
        labels: dict[str, str],
        shape: dict[str, Any],
        *,
        node: str | None = None,
    ) -> None:
        rng = self.rng
        if node is None:
            node = self.place(shape["requests"])
        else:
            self.free[node] = self.free[node] - shape["requests"]
        created = (self.started[node] + timedelta(seconds=rng.uniform(30, 7 * 86400))).replace(microsecond=0)
        uid = f"{len(self.pods):08x}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}"
        self.pods.append(
            Pod(
                namespace,
                name,
                uid,
                node,
                labels=labels,
                owner=owner,
                created_at=created,
                ready_since=created + timedelta(seconds=round(rng.uniform(5, 60))),
                **shape,
            )
        )

    def shape(self, requests: Resources | None = None, *, sidecar: bool = False) -> dict[str, Any]:
        """A pod template's requests and lifecycle: most have a readiness probe and a preStop sleep."""
        rng = self.rng
        if requests is None:
            cpu = rng.choice((0.1, 0.1, 0.25, 0.25, 0.5, 1.0))
            requests = Resources(cpu, rng.choice((128, 256, 256, 512, 1024, 2048)) * MI, 1)
        probe, stop = rng.random() < 0.9, rng.random() < 0.8
        return {
            # A pod requests what its containers do together.
            "requests": requests + SIDECAR if sidecar else requests,
            "readiness_probe": probe,
            "readiness_delay": float(rng.choice((0, 0, 5, 10))) if probe else 0.0,
            "pre_stop": stop,
            "pre_stop_seconds": 5.0 if stop else 0.0,
            "grace_seconds": 30,
            "tolerations": DEFAULT_TOLERATIONS,
        }

    def workload(
        self, namespace: str, owner: Owner, kind: str, app: str, image: str, *, sidecar: bool = False
    ) -> None:
        looks = self.looks
        self.workloads[(namespace, owner)] = Workload(
            kind,
            app,
            _uid(looks),
            image,
            _hex(looks, 64),
            looks.randint(20, 900) * MI,
            sidecar,
            sleep_action=looks.random() < 0.2,
        )

    def daemonset(self) -> None:
        """One node agent per node, placed first."""
        owner = Owner("DaemonSet", "node-agent")
        shape = self.shape(Resources(0.1, 200 * MI, 1))
        shape.update(tolerations=DAEMONSET_TOLERATIONS, node_selector={"kubernetes.io/os": "linux"})
        self.workload("kube-system", owner, "DaemonSet", "node-agent", "public.ecr.aws/acme/node-agent:3.2.1")
        labels = {"app": "node-agent", "controller-revision-hash": "6d5f8c7b9"}
        for node in self.nodes:
            name = f"node-agent-{_hex(self.rng, 5)}"
            # The DaemonSet controller pins each pod to its node by name.
            pinned = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node.name]}]}
            on_node = {**shape, "node_affinity": {"nodeSelectorTerms": [pinned]}}
            self.add_pod("kube-system", name, owner, labels, on_node, node=node.name)

    def deployment(self, namespace: str, app: str, replicas: int, *, sidecar: bool) -> None:
        replica_set = f"{app}-{HASH}"
        self.controllers[f"{namespace}/ReplicaSet/{replica_set}"] = Owner("Deployment", app)
        owner, shape = Owner("ReplicaSet", replica_set), self.shape(sidecar=sidecar)
        version = f"1.{self.looks.randint(0, 40)}.{self.looks.randint(0, 9)}"
        image = f"{REGISTRY}/{namespace}/{app}:{version}"
        self.workload(namespace, owner, "Deployment", app, image, sidecar=sidecar)
        labels = {"app": app, "pod-template-hash": HASH}
        for _ in range(replicas):
            self.add_pod(namespace, f"{replica_set}-{_hex(self.rng, 5)}", owner, labels, shape)

    def statefulset(self, namespace: str, app: str, replicas: int) -> None:
        owner, shape = Owner("StatefulSet", app), self.shape(Resources(1.0, 2048 * MI, 1))
        self.workload(namespace, owner, "StatefulSet", app, f"{REGISTRY}/{namespace}/{app}:16.4")
        for ordinal in range(replicas):
            name = f"{app}-{ordinal}"
            labels = {
                "app": app,
                "controller-revision-hash": f"{app}-7d9f8b6c5",
                "statefulset.kubernetes.io/pod-name": name,
            }
            self.add_pod(namespace, name, owner, labels, shape)

    def protect(self, namespace: str, app: str, replicas: int) -> None:
        """A PDB: maxUnavailable 1 or 25%, or (rarely) a minAvailable of every replica."""
        roll = self.rng.random()
        spec: dict[str, Any]
        if roll < 0.01:
            spec, desired = {"min_available": replicas}, replicas
        elif roll < 0.3:
            spec, desired = {"max_unavailable": "25%"}, replicas - max(-(-replicas // 4), 1)
        else:
            spec, desired = {"max_unavailable": 1}, replicas - 1
        desired = max(desired, 0)
        self.budgets.append(
            Budget(
                namespace,
                f"{app}-pdb",
                {"matchLabels": {"app": app}},
                **spec,
                expected_pods=replicas,
                current_healthy=replicas,
                desired_healthy=desired,
                disruptions_allowed=replicas - desired,
            )
        )

    def bodies(self) -> Bodies:
        """The list responses, objects in the API server's order (by namespace and name)."""
        looks = self.looks
        on_node: dict[str, list[Workload]] = defaultdict(list)
        hosts = {n.name: n.annotations["alpha.kubernetes.io/provided-node-ip"] for n in self.nodes}
        pods = []
        for pod in sorted(self.pods, key=lambda p: (p.namespace, p.name)):
            assert pod.owner is not None
            assert pod.node is not None
            workload = self.workloads[(pod.namespace, pod.owner)]
            on_node[pod.node].append(workload)
            pods.append(_pod_json(pod, workload, hosts[pod.node], looks))
        instances = {i.id: i for i in self.instances}
        nodes = [
            _node_json(node, instances[node.provider_id.rsplit("/", 1)[-1]], on_node[node.name], looks)
            for node in sorted(self.nodes, key=lambda n: n.name)
        ]
        budgets = [_budget_json(b, looks) for b in sorted(self.budgets, key=lambda b: (b.namespace, b.name))]
        return {
            "nodes": _list_body("NodeList", "v1", nodes, looks),
            "pods": _list_body("PodList", "v1", pods, looks),
            "budgets": _list_body("PodDisruptionBudgetList", "policy/v1", budgets, looks),
        }


# ----- the API's JSON ------------------------------------------------------------------------------


def _stamp(moment: datetime | None) -> str:
    assert moment is not None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(rng: random.Random) -> str:
    return str(rng.randint(10**8, 10**9))


def _cpu(cores: float) -> str:
    """A CPU quantity as the API server writes it back: whole cores bare, else millicores."""
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _bytes(amount: float) -> str:
    """A memory quantity in the largest binary unit that divides it (kubelet reports Ki)."""
    for suffix, unit in (("Gi", 2**30), ("Mi", MI), ("Ki", 2**10)):
        if amount % unit == 0:
            return f"{round(amount) // unit}{suffix}"
    return str(round(amount))


# List items keyed in managedFields by these, in this order ("k:{...}"); other lists are atomic.
_LIST_KEYS = ("uid", "containerPort", "mountPath", "name", "type", "ip")


def _fields(value: Any) -> Json:
    """The FieldsV1 set of a value a manager wrote: every field, list items by their key."""
    if isinstance(value, dict):
        return {".": {}, **{f"f:{k}": _fields(v) for k, v in value.items()}}
    if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        key = next((k for k in _LIST_KEYS if k in value[0]), None)
        if key is not None:
            keyed = {f'k:{{"{key}":{json.dumps(i[key])}}}': _fields(i) for i in value}
            return {".": {}, **keyed}
    return {}


def _managed(
    manager: str, when: datetime | None, parts: Json, subresource: str | None = None, api_version: str = "v1"
) -> Json:
    entry = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": api_version,
        "time": _stamp(when),
        "fieldsType": "FieldsV1",
        # The roots (metadata, spec, status) are no members of their own.
        "fieldsV1": {f"f:{k}": {f"f:{f}": _fields(v) for f, v in part.items()} for k, part in parts.items()},
    }
    return {**entry, "subresource": subresource} if subresource else entry


def _list_body(kind: str, api_version: str, items: list[Json], rng: random.Random) -> bytes:
    """A list response as the API server encodes it: compact, items without kind and apiVersion."""
    document = {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": _version(rng)}}
    return json.dumps({**document, "items": items}, separators=(",", ":")).encode()


def _condition(kind: str, status: str, since: datetime | None, reason: str, message: str) -> Json:
    return {
        "type": kind,
        "status": status,
        "lastHeartbeatTime": _stamp(NOW - timedelta(seconds=37)),
        "lastTransitionTime": _stamp(since),
        "reason": reason,
        "message": message,
    }


_SYSTEM_IMAGES = (
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni", "v1.19.2-eksbuild.1", 230 * MI),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/amazon-k8s-cni-init", "v1.19.2-eksbuild.1", 62 * MI),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/kube-proxy", "v1.31.3-minimal-eksbuild.2", 33 * MI),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/aws-ebs-csi-driver", "v1.38.1", 120 * MI),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/csi-node-driver-registrar", "v2.12.0", 14 * MI),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/livenessprobe", "v2.14.0", 13 * MI),
    ("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/pause", "3.10", 300_000),
)


_PRESSURES = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def _node_json(node: Node, instance: Instance, workloads: list[Workload], rng: random.Random) -> Json:
    ip = node.annotations["alpha.kubernetes.io/provided-node-ip"]
    metadata: Json = {
        "name": node.name,
        "uid": _uid(rng),
        "resourceVersion": _version(rng),
        "creationTimestamp": _stamp(node.created_at),
        "labels": node.labels,
        "annotations": node.annotations,
    }
    spec: Json = {"providerID": node.provider_id}
    if node.taints:
        spec["taints"] = [t.as_dict() for t in node.taints]
    allocatable = node.allocatable
    capacity = {"cpu": "16", "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    # kubelet reports its 50 largest images.
    images = {(w.image, w.digest, w.image_bytes) for w in workloads}
    images |= {
        (f"{repo}:{tag}", sha256(repo.encode()).hexdigest(), size) for repo, tag, size in _SYSTEM_IMAGES
    }
    largest = sorted(images, key=lambda i: -i[2])[:50]
    status = {
        "capacity": {**capacity, "memory": "64719044Ki", "pods": str(allocatable.pods)},
        "allocatable": {
            **capacity,
            "cpu": _cpu(allocatable.cpu),
            "ephemeral-storage": "95551679124",
            "memory": _bytes(allocatable.memory),
            "pods": str(allocatable.pods),
        },
        "conditions": [
            *(_condition(kind, "False", node.created_at, *why) for kind, *why in _PRESSURES),
            _condition(
                "Ready",
                "True" if node.ready else "False",
                node.ready_since,
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": ip},
            {"type": "InternalDNS", "address": node.name},
            {"type": "Hostname", "address": node.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": _hex(rng, 32),
            "systemUUID": f"ec2{_hex(rng, 5)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}",
            "bootID": _uid(rng),
            "kernelVersion": "6.1.119-129.201.amzn2023.x86_64",
            "osImage": "Amazon Linux 2023.6.20241212",
            "containerRuntimeVersion": "containerd://1.7.23",
            "kubeletVersion": "v1.31.3-eks-59bf375",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "images": [
            {"names": [f"{image.rsplit(':', 1)[0]}@sha256:{digest}", image], "sizeBytes": size}
            for image, digest, size in largest
        ],
        "runtimeHandlers": [
            {"name": name, "features": {"recursiveReadOnlyMounts": True, "userNamespaces": True}}
            for name in ("runc", "")
        ],
    }
    metadata["managedFields"] = [
        _managed("kubelet", node.created_at, {"metadata": {"annotations": {}, "labels": node.labels}}),
        _managed(
            "aws-cloud-controller-manager", instance.launched_at, {"spec": {"providerID": node.provider_id}}
        ),
        _managed("kube-controller-manager", node.created_at, {"metadata": {"annotations": node.annotations}}),
        _managed("kubelet", NOW, {"status": status}, "status"),
    ]
    return {"metadata": metadata, "spec": spec, "status": status}


def _app_container(pod: Pod, workload: Workload, token: str) -> Json:
    requests = pod.requests - SIDECAR if workload.sidecar else pod.requests
    container: Json = {
        "name": workload.app,
        "image": workload.image,
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ],
        "env": [
            *(
                {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
                for name, path in (
                    ("POD_NAME", "metadata.name"),
                    ("POD_NAMESPACE", "metadata.namespace"),
                )
            ),
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4317"},
        ],
        "resources": {
            "limits": {"memory": _bytes(requests.memory)},
            "requests": {"cpu": _cpu(requests.cpu), "memory": _bytes(requests.memory)},
        },
        "volumeMounts": [
            {"name": token, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
            "initialDelaySeconds": 15,
            "timeoutSeconds": 1,
            "periodSeconds": 20,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        },
    }
    if pod.readiness_probe:
        probe = {
            "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        }
        # The API server leaves out a zero initialDelaySeconds.
        delay = round(pod.readiness_delay)
        container["readinessProbe"] = {"initialDelaySeconds": delay, **probe} if delay else probe
    if pod.pre_stop:
        seconds = round(pod.pre_stop_seconds)
        container["lifecycle"] = {
            "preStop": {"sleep": {"seconds": seconds}}
            if workload.sleep_action
            else {"exec": {"command": ["/bin/sh", "-c", f"sleep {seconds}"]}}
        }
    return container


def _sidecar(token: str) -> Json:
    return {
        "name": "log-shipper",
        "image": SIDECAR_IMAGE,
        "args": ["--config", "/fluent-bit/etc/fluent-bit.conf"],
        "resources": {
            "limits": {"memory": "128Mi"},
            "requests": {"cpu": _cpu(SIDECAR.cpu), "memory": _bytes(SIDECAR.memory)},
        },
        "volumeMounts": [
            {"name": "fluent-bit-config", "mountPath": "/fluent-bit/etc/"},
            {"name": token, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _token_volume(name: str) -> Json:
    """The service account token volume admission adds to every pod."""
    return {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
            "defaultMode": 420,
        },
    }


def _pod_json(pod: Pod, workload: Workload, host: str, rng: random.Random) -> Json:
    assert pod.owner is not None
    token = f"kube-api-access-{_hex(rng, 5)}"
    daemon = workload.kind == "DaemonSet"
    containers = [_app_container(pod, workload, token)]
    volumes = [_token_volume(token)]
    if workload.sidecar:
        containers.append(_sidecar(token))
        volumes.append(
            {"name": "fluent-bit-config", "configMap": {"name": "fluent-bit-config", "defaultMode": 420}}
        )
    if daemon:
        volumes.append({"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}})
        containers[0]["volumeMounts"].append({"name": "varlog", "readOnly": True, "mountPath": "/var/log"})
    if workload.kind == "StatefulSet":
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": f"data-{pod.name}"}})
        containers[0]["volumeMounts"].append({"name": "data", "mountPath": "/var/lib/data"})
    spec: Json = {
        "volumes": volumes,
        "containers": containers,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": pod.grace_seconds,
        "dnsPolicy": "ClusterFirstWithHostNet" if daemon else "ClusterFirst",
        "serviceAccountName": workload.app,
        "serviceAccount": workload.app,
        "nodeName": pod.node,
        "securityContext": {"runAsUser": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "schedulerName": "default-scheduler",
        "tolerations": list(pod.tolerations),
        "priority": 2000001000 if daemon else 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    if pod.node_selector:
        spec["nodeSelector"] = pod.node_selector
    if pod.node_affinity:
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": pod.node_affinity}
        }
    if daemon:
        spec.update(hostNetwork=True, priorityClassName="system-node-critical")
    if workload.kind == "StatefulSet":
        spec.update(hostname=pod.name, subdomain=workload.app)
    started = pod.created_at + timedelta(seconds=1) if pod.created_at else None
    ip = host if daemon else f"10.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    ready = "True" if pod.ready else "False"
    status: Json = {
        "phase": pod.phase,
        "conditions": [
            {"type": kind, "status": state, "lastProbeTime": None, "lastTransitionTime": _stamp(since)}
            for kind, state, since in (
                ("PodReadyToStartContainers", "True", started),
                ("Initialized", "True", pod.created_at),
                ("Ready", ready, pod.ready_since),
                ("ContainersReady", ready, pod.ready_since),
                ("PodScheduled", "True", pod.created_at),
            )
        ],
        "hostIP": host,
        "hostIPs": [{"ip": host}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": _stamp(pod.created_at),
        "containerStatuses": [
            {
                "name": c["name"],
                "state": {"running": {"startedAt": _stamp(started)}},
                "lastState": {},
                "ready": pod.ready,
                "restartCount": 0,
                "image": c["image"],
                "imageID": f"{c['image'].rsplit(':', 1)[0]}@sha256:{workload.digest}",
                "containerID": f"containerd://{_hex(rng, 64)}",
                "started": True,
            }
            for c in containers
        ],
        "qosClass": "Burstable",
    }
    owner = {
        "apiVersion": "apps/v1",
        "kind": pod.owner.kind,
        "name": pod.owner.name,
        "uid": workload.owner_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    metadata: Json = {
        "name": pod.name,
        "namespace": pod.namespace,
        "uid": pod.uid,
        "resourceVersion": _version(rng),
        "creationTimestamp": _stamp(pod.created_at),
        "labels": pod.labels,
        "annotations": {
            **pod.annotations,
            "prometheus.io/port": "9090",
            "prometheus.io/scrape": "true",
        },
        "ownerReferences": [owner],
    }
    if workload.kind != "StatefulSet":
        metadata["generateName"] = pod.name[: -len(pod.name.rsplit("-", 1)[-1])]
    # What the controller wrote when it created the pod: the template's part (the scheduler set nodeName).
    template = {
        k: metadata[k] for k in ("generateName", "labels", "annotations", "ownerReferences") if k in metadata
    }
    written = {key: value for key, value in spec.items() if key != "nodeName"}
    metadata["managedFields"] = [
        _managed("kube-controller-manager", pod.created_at, {"metadata": template, "spec": written}),
        _managed("kubelet", pod.ready_since, {"status": status}, "status"),
    ]
    return {"metadata": metadata, "spec": spec, "status": status}


def _budget_json(budget: Budget, rng: random.Random) -> Json:
    app = budget.name.removesuffix("-pdb")
    created = NOW - timedelta(days=90)
    spec: Json = {"selector": budget.selector}
    if budget.min_available is not None:
        spec["minAvailable"] = budget.min_available
    if budget.max_unavailable is not None:
        spec["maxUnavailable"] = budget.max_unavailable
    allowed = budget.disruptions_allowed > 0
    status = {
        "observedGeneration": 1,
        "disruptionsAllowed": budget.disruptions_allowed,
        "currentHealthy": budget.current_healthy,
        "desiredHealthy": budget.desired_healthy,
        "expectedPods": budget.expected_pods,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "True" if allowed else "False",
                "observedGeneration": 1,
                "lastTransitionTime": _stamp(created),
                "reason": "SufficientPods" if allowed else "InsufficientPods",
                "message": "",
            }
        ],
    }
    metadata: Json = {
        "name": budget.name,
        "namespace": budget.namespace,
        "uid": _uid(rng),
        "resourceVersion": _version(rng),
        "generation": 1,
        "creationTimestamp": _stamp(created),
        "labels": {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/name": app},
        "annotations": {"meta.helm.sh/release-name": app, "meta.helm.sh/release-namespace": budget.namespace},
    }
    metadata["managedFields"] = [
        _managed(
            "helm", created, {"metadata": {k: metadata[k] for k in ("labels", "annotations")}, "spec": spec}
        ),
        _managed("kube-controller-manager", NOW, {"status": status}, "status"),
    ]
    return {"metadata": metadata, "spec": spec, "status": status}


# ----- the measurements ----------------------------------------------------------------------------


def build(nodes: int, pods: int, seed: int) -> Cluster:
    """1,500 Deployments (990 with a PDB, 1,400 behind a Service, every third with a sidecar) and 100
    StatefulSets (each with a PDB and a Service) over 100 namespaces, after one DaemonSet pod per node;
    ``pods`` in all."""
    cluster = Cluster(nodes, seed)
    cluster.daemonset()
    namespaces = [f"team-{i:03d}" for i in range(100)]
    workload_pods = pods - len(cluster.pods)
    stateful_pods = min(400, workload_pods // 10)
    for index, replicas in enumerate(_replicas(cluster.rng, 1500, workload_pods - stateful_pods)):
        namespace, app = namespaces[index % len(namespaces)], f"svc-{index:04d}"
        cluster.deployment(namespace, app, replicas, sidecar=index % 3 == 0)
        if index < 990:
            cluster.protect(namespace, app, replicas)
        if index < 1400:
            cluster.services.append(Service(namespace, app, {"app": app}))
    for index, replicas in enumerate(_replicas(cluster.rng, 100, stateful_pods)):
        namespace, app = namespaces[(index * 7) % len(namespaces)], f"db-{index:03d}"
        cluster.statefulset(namespace, app, replicas)
        cluster.protect(namespace, app, replicas)
        cluster.services.append(Service(namespace, app, {"app": app}))
    # Strays: Services without a selector, budgets left behind by deleted apps.
    cluster.services += [Service(namespaces[i], f"external-{i}", {}) for i in range(10)]
    cluster.budgets += [
        Budget(namespaces[i], f"gone-{i}-pdb", {"matchLabels": {"app": f"gone-{i}"}}) for i in range(5)
    ]
    return cluster


def _parsed(body: bytes, form: parse.Format[Any, R]) -> tuple[R, ...]:
    """One kind's records, as Kube.nodes/pods/budgets (Kube._list) read a list response's body: decoded
    with the garbage collector paused."""
    with parse.paused:
        records = form.listed(body)[0]
    return tuple(records)


def load(bodies: Bodies, services: tuple[Service, ...], controllers: dict[str, Owner]) -> Snapshot:
    """The snapshot as Kube.snapshot builds it, from the list responses' bodies."""
    return parse.kept(
        Snapshot(
            nodes=_parsed(bodies["nodes"], parse.NODES),
            pods=_parsed(bodies["pods"], parse.PODS),
            budgets=_parsed(bodies["budgets"], parse.BUDGETS),
            services=services,
            controllers=controllers,
        )
    )


def check(parsed: Snapshot, synthetic: Snapshot) -> None:
    """The JSON says what the records do: parsing it gives them back, in the API server's order."""
    pairs: dict[str, tuple[tuple[Any, ...], list[Any]]] = {
        "nodes": (parsed.nodes, sorted(synthetic.nodes, key=lambda n: n.name)),
        "pods": (parsed.pods, sorted(synthetic.pods, key=lambda p: (p.namespace, p.name))),
        "budgets": (parsed.budgets, sorted(synthetic.budgets, key=lambda b: (b.namespace, b.name))),
    }
    for kind, (got, wanted) in pairs.items():
        assert len(got) == len(wanted), f"{kind}: {len(got)} parsed, {len(wanted)} synthetic"
        for one, other in zip(got, wanted, strict=True):
            assert one == other, f"{kind}: parsed {one} differs from synthetic {other}"


def fresh() -> None:
    """The heap as a new process's: nothing frozen by an earlier ``load``, no garbage left."""
    gc.unfreeze()
    gc.collect()


def timed_snapshot(
    bodies: Bodies, services: tuple[Service, ...], controllers: dict[str, Owner]
) -> tuple[float, Snapshot]:
    fresh()
    started = time.process_time()
    snapshot = load(bodies, services, controllers)
    return time.process_time() - started, snapshot


def timed_plan(group: Group, snapshot: Snapshot, surge: int | None) -> tuple[float, GroupPlan]:
    started = time.process_time()
    plan = plan_group(group, snapshot, settings=Settings(), now=NOW, surge=surge)
    return time.process_time() - started, plan


def summary(plan: GroupPlan) -> dict[str, Any]:
    checks: dict[str, int] = {}
    for finding in (*plan.blockers, *plan.warnings):
        checks[finding.check] = checks.get(finding.check, 0) + 1
    return {
        "outdated_instances": len(plan.outdated),
        "waves": len(plan.waves),
        "decisions": len(plan.decisions),
        "evictions": len(plan.evictions),
        "blockers": len(plan.blockers),
        "warnings": len(plan.warnings),
        "findings_by_check": dict(sorted(checks.items())),
        "fits": plan.fit.fits if plan.fit else None,
        "estimate_seconds": round(plan.estimate.seconds, 1) if plan.estimate else None,
    }


def profile(run: Callable[[], object]) -> str:
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(run)
    out = io.StringIO()
    for order in ("cumulative", "tottime"):
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(25)
    return out.getvalue()


def collector(what: str, run: Callable[[], object]) -> str:
    """The CPU time of ``run`` and the cyclic garbage collector's part of it, by generation."""
    spent, collections, since = [0.0, 0.0, 0.0], [0, 0, 0], 0.0

    def note(phase: str, info: dict[str, int]) -> None:
        nonlocal since
        if phase == "start":
            since = time.process_time()
        else:
            spent[info["generation"]] += time.process_time() - since
            collections[info["generation"]] += 1

    gc.callbacks.append(note)
    started = time.process_time()
    try:
        run()
    finally:
        gc.callbacks.remove(note)
    total = time.process_time() - started
    parts = ", ".join(
        f"generation {g}: {n} collections, {s:.3f} s"
        for g, (n, s) in enumerate(zip(collections, spent, strict=True))
    )
    return f"{what}: {total:.3f} s of CPU, the garbage collector {sum(spent):.3f} s of it ({parts})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=60000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--surge", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print cProfiles of one snapshot building and one plan on stderr",
    )
    args = parser.parse_args()
    started = time.process_time()
    cluster = build(args.nodes, args.pods, args.seed)
    build_seconds = time.process_time() - started
    started = time.process_time()
    # Rendering holds every object until it is encoded: the collector would only walk them again and again.
    gc.disable()
    bodies = cluster.bodies()
    gc.enable()
    render_seconds = time.process_time() - started
    group, synthetic = cluster.group(), cluster.snapshot()
    check(load(bodies, synthetic.services, synthetic.controllers), synthetic)
    services, controllers = synthetic.services, synthetic.controllers
    # Only the bodies stay: nodeswap holds nothing this large while it lists, and live objects slow the
    # garbage collector's full collections down.
    del cluster, synthetic
    snapshot_runs, snapshot = [], None
    for _ in range(args.repeat):
        snapshot = None  # the previous run's records go before the next run, for the same reason
        seconds, snapshot = timed_snapshot(bodies, services, controllers)
        snapshot_runs.append(seconds)
    assert snapshot is not None
    plan_runs, plan = [], None
    for _ in range(args.repeat):
        seconds, plan = timed_plan(group, snapshot, None)
        plan_runs.append(seconds)
    assert plan is not None
    surge_seconds, surge_plan = timed_plan(group, snapshot, args.surge)
    counts = {"nodes": len(snapshot.nodes), "pods": len(snapshot.pods), "budgets": len(snapshot.budgets)}
    result: dict[str, Any] = {
        "nodes": len(snapshot.nodes),
        "pods": len(snapshot.pods),
        "budgets": len(snapshot.budgets),
        "services": len(snapshot.services),
        "bodies_mb": round(sum(len(b) for b in bodies.values()) / 1e6, 1),
        "bodies_mb_by_kind": {kind: round(len(body) / 1e6, 1) for kind, body in bodies.items()},
        "kib_per_object": {kind: round(len(body) / counts[kind] / 1024, 1) for kind, body in bodies.items()},
        "build_cpu_seconds": round(build_seconds, 2),
        "render_cpu_seconds": round(render_seconds, 2),
        "snapshot_cpu_seconds": round(min(snapshot_runs), 3),
        "snapshot_cpu_seconds_runs": [round(r, 3) for r in snapshot_runs],
        "plan_cpu_seconds_min": round(min(plan_runs), 3),
        "plan_cpu_seconds_runs": [round(r, 3) for r in plan_runs],
        "total_cpu_seconds": round(min(snapshot_runs) + min(plan_runs), 3),
        "plan": summary(plan),
        f"surge_{args.surge}_cpu_seconds": round(surge_seconds, 3),
        f"surge_{args.surge}_plan": summary(surge_plan),
    }
    print(json.dumps(result, indent=2))
    if args.profile:
        del snapshot, plan, surge_plan  # as for the measurements: only the bodies stay while building
        fresh()
        print(collector("snapshot building", lambda: load(bodies, services, controllers)), file=sys.stderr)
        fresh()
        print(profile(lambda: load(bodies, services, controllers)), file=sys.stderr)
        fresh()
        snapshot = load(bodies, services, controllers)
        print(profile(lambda: plan_group(group, snapshot, settings=Settings(), now=NOW)), file=sys.stderr)
        print(
            profile(lambda: plan_group(group, snapshot, settings=Settings(), now=NOW, surge=args.surge)),
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
