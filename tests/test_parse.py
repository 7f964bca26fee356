"""nodeswap.parse against objects shaped as kube-apiserver serves them (compact JSON, managedFields,
status nodeswap does not read, RFC 3339 times with Z, quantities as strings): a list body and watch
lines become the records nodeswap plans with, field by field, with the fields it reads and nothing
else; BOOKMARK lines carry only a version and an ERROR line is raised as its Status; the collector's
pause nests across threads and leaves a collector it found disabled alone."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from nodeswap import parse
from nodeswap.model import Budget, Node, Owner, Pod, Resources, Service, Snapshot, Taint

GI, MI = 2**30, 2**20


def managed(manager: str, subresource: str | None = None) -> dict[str, Any]:
    """A managedFields entry: what every object carries and nodeswap never reads."""
    entry = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "v1",
        "time": "2025-05-30T08:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:containers": {}}},
    }
    return {**entry, "subresource": subresource} if subresource else entry


NODE: dict[str, Any] = {
    "metadata": {
        "name": "ip-10-0-1-17.ec2.internal",
        "uid": "5b0c61f2-5e1f-4c7e-9d6a-0a4f3e2b1c11",
        "resourceVersion": "884213",
        "creationTimestamp": "2025-05-30T08:00:00Z",
        "labels": {"kubernetes.io/hostname": "ip-10-0-1-17", "topology.kubernetes.io/zone": "us-east-1a"},
        "annotations": {"node.alpha.kubernetes.io/ttl": "0", "nodeswap.io/cordoned-before": "true"},
        "managedFields": [managed("kubelet"), managed("kubelet", "status")],
    },
    "spec": {
        "providerID": "aws:///us-east-1a/i-0abc1234def567890",
        "unschedulable": True,
        "taints": [
            {"key": "nodeswap.io/retiring", "value": "run-1", "effect": "NoSchedule"},
            {
                "key": "node.kubernetes.io/unreachable",
                "effect": "NoExecute",
                "timeAdded": "2025-06-01T11:59:00Z",
            },
        ],
    },
    "status": {
        "capacity": {"cpu": "16", "memory": "64000000Ki", "pods": "234"},
        "allocatable": {"cpu": "15890m", "memory": "60Gi", "pods": "234", "ephemeral-storage": "95Gi"},
        "conditions": [
            {
                "type": "MemoryPressure",
                "status": "False",
                "lastHeartbeatTime": "2025-06-01T11:59:23Z",
                "lastTransitionTime": "2025-05-30T08:00:00Z",
                "reason": "KubeletHasSufficientMemory",
            },
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": "2025-06-01T11:59:23Z",
                "lastTransitionTime": "2025-05-30T08:01:05Z",
                "reason": "KubeletReady",
            },
        ],
        "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320368}],
        "nodeInfo": {"kubeletVersion": "v1.31.3-eks-59bf375", "containerRuntimeVersion": "containerd://1.7"},
    },
}

EXPECTED_NODE = Node(
    name="ip-10-0-1-17.ec2.internal",
    provider_id="aws:///us-east-1a/i-0abc1234def567890",
    ready=True,
    unschedulable=True,
    taints=(
        Taint("nodeswap.io/retiring", "NoSchedule", "run-1"),
        Taint("node.kubernetes.io/unreachable", "NoExecute", "", "2025-06-01T11:59:00Z"),
    ),
    labels={"kubernetes.io/hostname": "ip-10-0-1-17", "topology.kubernetes.io/zone": "us-east-1a"},
    annotations={"node.alpha.kubernetes.io/ttl": "0", "nodeswap.io/cordoned-before": "true"},
    allocatable=Resources(15.89, 60 * GI, 234),
    created_at=datetime(2025, 5, 30, 8, 0, tzinfo=UTC),
    ready_since=datetime(2025, 5, 30, 8, 1, 5, tzinfo=UTC),
    resource_version="884213",
)

LAST_APPLIED = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}, "spec": {}})
AFFINITY = {
    "nodeSelectorTerms": [
        {
            "matchExpressions": [
                {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m5"]}
            ]
        }
    ]
}
TOLERATIONS: list[dict[str, Any]] = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
]

POD: dict[str, Any] = {
    "metadata": {
        "name": "web-0",
        "generateName": "web-",
        "namespace": "shop",
        "uid": "9f1d0c55-0e7a-4d3b-8f7e-3c2a1b0d9e8f",
        "resourceVersion": "884290",
        "creationTimestamp": "2025-06-01T10:00:00Z",
        "deletionTimestamp": "2025-06-01T12:00:30Z",
        "deletionGracePeriodSeconds": 45,
        "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": LAST_APPLIED,
            "karpenter.sh/do-not-disrupt": "true",
            "prometheus.io/scrape": "true",
        },
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "web-config", "uid": "c1"},
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-7d9f8c6b5",
                "uid": "7a2e",
                "controller": True,
                "blockOwnerDeletion": True,
            },
        ],
        "managedFields": [managed("kube-controller-manager"), managed("kubelet", "status")],
    },
    "spec": {
        "volumes": [
            {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
            {"name": "scratch", "emptyDir": {}},
        ],
        "initContainers": [
            {
                "name": "migrate",
                "image": "web:1.2",
                "resources": {"requests": {"cpu": "200m", "memory": "2Gi"}},
            }
        ],
        "containers": [
            {
                "name": "web",
                "image": "web:1.2",
                "env": [{"name": "PORT", "value": "8080"}],
                "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "100m", "memory": "1Gi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "initialDelaySeconds": 5},
                "lifecycle": {"preStop": {"sleep": {"seconds": 10}}},
            },
            {
                "name": "shipper",
                "image": "fluent-bit:2.32",
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
                "readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 12},
                "lifecycle": {
                    "postStart": {"exec": {"command": ["/bin/true"]}},
                    "preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 15 && kill -TERM 1"]}},
                },
            },
        ],
        "terminationGracePeriodSeconds": 45,
        "nodeName": "ip-10-0-1-17.ec2.internal",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": AFFINITY},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
        },
        "tolerations": TOLERATIONS,
    },
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2025-06-01T10:00:01Z"},
            {
                "type": "Ready",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": "2025-06-01T10:00:20.5Z",
            },
        ],
        "podIP": "10.64.3.7",
        "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0, "state": {"running": {}}}],
        "qosClass": "Burstable",
    },
}

EXPECTED_POD = Pod(
    namespace="shop",
    name="web-0",
    uid="9f1d0c55-0e7a-4d3b-8f7e-3c2a1b0d9e8f",
    node="ip-10-0-1-17.ec2.internal",
    labels={"app": "web", "pod-template-hash": "7d9f8c6b5"},
    annotations={"karpenter.sh/do-not-disrupt": "true"},  # only those the planner reads
    owner=Owner("ReplicaSet", "web-7d9f8c6b5"),  # the controller, not the other owner
    phase="Running",
    ready=True,
    deleting=True,
    empty_dir=True,
    mirror=False,
    # CPU: the containers' 0.35 over the init container's 0.2; memory: the init container's 2 GiB.
    requests=Resources(0.1 + 0.25, 2 * GI, 1),
    node_selector={"kubernetes.io/os": "linux"},
    node_affinity=AFFINITY,
    tolerations=tuple(TOLERATIONS),
    readiness_probe=True,
    readiness_delay=12.0,
    pre_stop=True,
    pre_stop_seconds=15.0,  # the exec's `sleep 15`, longer than the other's sleep action
    grace_seconds=45,
    created_at=datetime(2025, 6, 1, 10, 0, tzinfo=UTC),
    ready_since=datetime(2025, 6, 1, 10, 0, 20, 500000, tzinfo=UTC),
)

# A static pod's mirror, as the kubelet creates it: no owner but the node, not ready, nothing optional.
MIRROR_POD: dict[str, Any] = {
    "metadata": {
        "name": "kube-proxy-ip-10-0-1-17",
        "namespace": "kube-system",
        "uid": "m1",
        "resourceVersion": "884300",
        "annotations": {"kubernetes.io/config.mirror": "0f3c", "kubernetes.io/config.source": "file"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "ip-10-0-1-17", "uid": "n1"}],
    },
    "spec": {"containers": [{"name": "kube-proxy", "image": "kube-proxy:1.31"}]},
    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]},
}

EXPECTED_MIRROR_POD = Pod(
    namespace="kube-system",
    name="kube-proxy-ip-10-0-1-17",
    uid="m1",
    node=None,
    mirror=True,
    ready=False,
    requests=Resources(0.0, 0.0, 1),
)

BUDGET: dict[str, Any] = {
    "metadata": {
        "name": "web",
        "namespace": "shop",
        "uid": "b1",
        "resourceVersion": "884310",
        "generation": 2,
        "managedFields": [managed("kubectl-client-side-apply")],
    },
    "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
    "status": {
        "observedGeneration": 2,
        "disruptionsAllowed": 1,
        "currentHealthy": 3,
        "desiredHealthy": 2,
        "expectedPods": 3,
        "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods"}],
    },
}

EXPECTED_BUDGET = Budget(
    "shop",
    "web",
    {"matchLabels": {"app": "web"}},
    min_available="50%",
    expected_pods=3,
    current_healthy=3,
    desired_healthy=2,
    disruptions_allowed=1,
)


def list_body(kind: str, items: list[dict[str, Any]], version: str = "884400") -> bytes:
    """A list response as the API server encodes it: compact, items without kind and apiVersion."""
    body = {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}
    return json.dumps(body, separators=(",", ":")).encode()


def watch_line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def test_a_node_list_becomes_node_records_with_their_resource_versions() -> None:
    nodes, version = parse.NODES.listed(list_body("NodeList", [NODE]))
    assert version == "884400"
    assert nodes == [EXPECTED_NODE]
    assert nodes[0].resource_version == "884213"  # not compared, but written back as a precondition


def test_a_pod_list_becomes_pod_records_of_the_fields_nodeswap_reads() -> None:
    pods, version = parse.PODS.listed(list_body("PodList", [POD, MIRROR_POD], "884401"))
    assert version == "884401"
    assert pods == [EXPECTED_POD, EXPECTED_MIRROR_POD]


def test_a_budget_list_becomes_budget_records() -> None:
    unready = {"metadata": {"name": "db", "namespace": "shop"}, "spec": {"maxUnavailable": 1, "selector": {}}}
    budgets, _ = parse.BUDGETS.listed(list_body("PodDisruptionBudgetList", [BUDGET, unready]))
    assert budgets == [EXPECTED_BUDGET, Budget("shop", "db", {}, max_unavailable=1)]


def test_services_and_the_controllers_of_replicasets() -> None:
    services, _ = parse.SERVICES.listed(
        list_body(
            "ServiceList",
            [
                {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"selector": {"app": "web"}}},
                {"metadata": {"name": "db-external", "namespace": "shop"}, "spec": {"type": "ExternalName"}},
            ],
        )
    )
    assert services == [Service("shop", "web", {"app": "web"}), Service("shop", "db-external", {})]
    owned = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1", "controller": True}
    replicasets, _ = parse.REPLICASETS.listed(
        list_body(
            "ReplicaSetList",
            [
                {"metadata": {"name": "web-7d9f8c6b5", "namespace": "shop", "ownerReferences": [owned]}},
                {"metadata": {"name": "bare", "namespace": "shop"}},
            ],
        )
    )
    assert replicasets == [
        ("shop/ReplicaSet/web-7d9f8c6b5", Owner("Deployment", "web")),
        ("shop/ReplicaSet/bare", None),
    ]


def test_watch_lines_give_the_event_its_record_and_the_version_to_resume_from() -> None:
    assert parse.PODS.event(watch_line("MODIFIED", POD)) == ("MODIFIED", EXPECTED_POD, "884290")
    event, node, version = parse.NODES.event(watch_line("DELETED", NODE))
    assert (event, node, version) == ("DELETED", EXPECTED_NODE, "884213")
    bookmark = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "884500", "annotations": {"k8s.io/initial-events-end": "true"}},
    }
    assert parse.PODS.event(watch_line("BOOKMARK", bookmark)) == ("BOOKMARK", None, "884500")


def test_an_error_line_is_raised_as_its_status() -> None:
    expired = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version: 884000 (884290)",
        "reason": "Expired",
        "code": 410,
    }
    with pytest.raises(ApiException) as raised:
        parse.PODS.event(watch_line("ERROR", expired))
    assert (raised.value.status, raised.value.reason) == (410, "too old resource version: 884000 (884290)")


@pytest.mark.parametrize(
    "line",
    [b'{"type":"ADDED","object":{"metadata":', b'{"type":"ADDED","object":{"metadata":{"name":7}}}'],
    ids=["cut", "wrong-type"],
)
def test_a_line_that_does_not_decode_is_a_value_error(line: bytes) -> None:
    """What the cache's watch takes as a cut watch: it lists again."""
    with pytest.raises(ValueError, match=r"truncated|Expected `str`"):
        parse.PODS.event(line)


def test_a_single_read_node() -> None:
    assert parse.NODES.one(json.dumps(NODE).encode()) == EXPECTED_NODE


def test_fields_left_out_or_null_take_their_defaults() -> None:
    """As the API server leaves out empty fields; objects it did not write may have them null."""
    bare = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": None},
        "spec": {"volumes": None},
    }
    (pod,), _ = parse.PODS.listed(list_body("PodList", [bare]))
    assert pod == Pod("n", "p", "u", None, phase="Pending", ready=False, requests=Resources(0.0, 0.0, 1))
    (node,), _ = parse.NODES.listed(list_body("NodeList", [{"metadata": {"name": "n"}, "status": None}]))
    assert node == Node("n", "", ready=False, allocatable=Resources(0.0, 0.0, 110))


def test_the_pause_nests_and_restores_the_collector_as_it_found_it() -> None:
    assert gc.isenabled()
    with parse.paused:
        with parse.paused:  # another thread's list, overlapping
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first list is still being parsed
    assert gc.isenabled()
    gc.disable()
    try:
        with parse.paused:
            pass
        assert not gc.isenabled()  # it was disabled before: left so
    finally:
        gc.enable()


def test_a_kept_snapshot_is_out_of_the_collectors_reach() -> None:
    snapshot = Snapshot(nodes=(EXPECTED_NODE,))
    try:
        assert parse.kept(snapshot) is snapshot
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
