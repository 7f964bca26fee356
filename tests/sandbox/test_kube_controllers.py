"""The simulated cluster's controllers and scheduler behave as Kubernetes' do, seen through the official
client: taint-based eviction, spreading and anti-affinity, DaemonSets around terminating pods and
not-ready nodes, Endpoints, and the disruption controller's expected counts and fail-safe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.sandbox.test_kube_api import WORKLOADS, wait_for, web_pods
from tests.sandbox.test_kube_cluster import launch_new_image, nodes
from tests.sandbox_client import FROZEN_TIMING, QUICK_KUBERNETES, QUICK_TIMING, SandboxClient

MAINTENANCE = "example.com/maintenance"


@pytest.fixture
def cluster(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    """Three Ready nodes running the manifests' workloads (web behind a budget, agent, db)."""
    return start_sandbox(timing=QUICK_TIMING, kubernetes={**QUICK_KUBERNETES, "workloads": WORKLOADS})


@pytest.fixture
def empty(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    """Three Ready nodes and nothing on them."""
    return start_sandbox(timing=QUICK_TIMING, kubernetes=QUICK_KUBERNETES)


def settle(cluster: SandboxClient) -> None:
    """Let the cluster act on the changes so far: run every reconcile pass that is due now."""
    cluster.sandbox.scheduler.settle(0)


def workload(name: str, **pod_spec: Any) -> dict[str, Any]:
    """A DaemonSet (or, with replicas added, a Deployment) of pods labelled app=<name>."""
    container = {"name": "app", "image": "app", **pod_spec.pop("container", {})}
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], **pod_spec},
            },
        },
    }


def deployment(name: str, replicas: int, **pod_spec: Any) -> dict[str, Any]:
    made = workload(name, **pod_spec)
    made["spec"]["replicas"] = replicas
    return made


# A pod that takes 30 s to stop: it stays Terminating until a test moves the clock.
SLOW_STOP: dict[str, Any] = {
    "terminationGracePeriodSeconds": 60,
    "container": {"lifecycle": {"preStop": {"sleep": {"seconds": 30}}}},
}


def pods_of(core: client.CoreV1Api, app: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod("default", label_selector=f"app={app}").items


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


# ----- taint-based eviction -------------------------------------------------------------------------


def test_a_noexecute_taint_deletes_the_pods_that_do_not_tolerate_it_whatever_the_budget(
    cluster: SandboxClient,
) -> None:
    core = client.CoreV1Api(cluster.kube())
    policy = client.PolicyV1Api(cluster.kube())
    assert policy.read_namespaced_pod_disruption_budget("web", "default").status.disruptions_allowed == 1
    doomed = web_pods(core)  # three pods, where the budget allows one disruption
    since = cluster.sandbox.store.resource_version
    for node in {p.spec.node_name for p in doomed}:
        core.patch_node(node, {"spec": {"taints": [{"key": MAINTENANCE, "effect": "NoExecute"}]}})
    uids = {p.metadata.uid for p in doomed}
    wait_for(
        lambda: not uids & {p.metadata.uid for p in pods_of(core, "web")},
        cluster,
        "the web pods to be deleted",
    )
    # Deleted, not evicted: the budget (one disruption allowed) was not asked, nor charged.
    marked = {
        change.object["metadata"]["uid"]
        for change in cluster.sandbox.store.changes_since(since)
        if any(
            c["type"] == "DisruptionTarget" and c.get("reason") == "DeletionByTaintManager"
            for c in change.object.get("status", {}).get("conditions") or []
        )
    }
    assert uids <= marked
    assert not policy.read_namespaced_pod_disruption_budget("web", "default").status.disrupted_pods


def test_a_tolerated_noexecute_taint_deletes_the_pod_after_its_toleration_seconds(
    empty: SandboxClient,
) -> None:
    core = client.CoreV1Api(empty.kube())
    node = core.list_node().items[0].metadata.name
    toleration = {"key": MAINTENANCE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}
    pod = {
        "metadata": {"name": "patient"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [toleration],
            "terminationGracePeriodSeconds": 60,
            "containers": [
                {"name": "app", "image": "app", "lifecycle": {"preStop": {"sleep": {"seconds": 30}}}}
            ],
        },
    }
    core.create_namespaced_pod("default", pod)
    wait_for(lambda: is_ready(core.read_namespaced_pod("patient", "default")), empty, "the pod to run")
    added = empty.sandbox.scheduler.clock.wall().strftime("%Y-%m-%dT%H:%M:%SZ")
    taint = {"key": MAINTENANCE, "effect": "NoExecute", "timeAdded": added}
    core.patch_node(node, {"spec": {"taints": [taint]}})
    empty.advance(55)
    settle(empty)
    assert core.read_namespaced_pod("patient", "default").metadata.deletion_timestamp is None
    empty.advance(6)
    wait_for(
        lambda: core.read_namespaced_pod("patient", "default").metadata.deletion_timestamp is not None,
        empty,
        "the toleration to run out",
    )
    (target,) = [
        c
        for c in core.read_namespaced_pod("patient", "default").status.conditions
        if c.type == "DisruptionTarget"
    ]
    assert (target.status, target.reason) == ("True", "DeletionByTaintManager")


# ----- the scheduler ------------------------------------------------------------------------------


def bound(core: client.CoreV1Api, app: str) -> list[str]:
    return [p.spec.node_name for p in pods_of(core, app) if p.spec.node_name]


def test_replicas_of_a_workload_spread_over_the_nodes(empty: SandboxClient) -> None:
    core = client.CoreV1Api(empty.kube())
    client.AppsV1Api(empty.kube()).create_namespaced_deployment("default", deployment("spread", 3))
    wait_for(lambda: len(bound(core, "spread")) == 3, empty, "three replicas to be scheduled")
    assert len(set(bound(core, "spread"))) == 3


def test_replicas_spread_even_onto_a_busier_node(empty: SandboxClient) -> None:
    core = client.CoreV1Api(empty.kube())
    first, *others = sorted(n.metadata.name for n in core.list_node().items)
    for node in others:  # half of each other node's CPU taken: on resources alone, `first` wins every pod
        ballast = {
            "metadata": {"name": f"ballast-{node}"},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "containers": [{"name": "a", "image": "a", "resources": {"requests": {"cpu": "1"}}}],
            },
        }
        core.create_namespaced_pod("default", ballast)
    wait_for(
        lambda: all(p.spec.node_name for p in core.list_namespaced_pod("default").items),
        empty,
        "the ballast to be placed",
    )
    client.AppsV1Api(empty.kube()).create_namespaced_deployment("default", deployment("spread", 2))
    wait_for(lambda: len(bound(core, "spread")) == 2, empty, "two replicas to be scheduled")
    assert first in bound(core, "spread")
    assert len(set(bound(core, "spread"))) == 2


def test_pods_without_requests_are_scored_as_if_they_asked_for_the_defaults(empty: SandboxClient) -> None:
    core = client.CoreV1Api(empty.kube())
    placed = []
    for index in range(3):  # bare pods: no controller to spread by, only the resources they count for
        body = {"metadata": {"name": f"bare{index}"}, "spec": {"containers": [{"name": "a", "image": "a"}]}}
        core.create_namespaced_pod("default", body)
        wait_for(
            lambda i=index: bool(core.read_namespaced_pod(f"bare{i}", "default").spec.node_name),
            empty,
            "bound",
        )
        placed.append(core.read_namespaced_pod(f"bare{index}", "default").spec.node_name)
    assert len(set(placed)) == 3


def test_required_anti_affinity_keeps_pods_off_a_node_already_running_a_match(empty: SandboxClient) -> None:
    core = client.CoreV1Api(empty.kube())
    term = {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    client.AppsV1Api(empty.kube()).create_namespaced_deployment(
        "default", deployment("solo", 4, affinity=affinity)
    )

    def one_left_over() -> bool:
        pending = [p for p in pods_of(core, "solo") if not p.spec.node_name]
        return len(bound(core, "solo")) == 3 and any(
            c.type == "PodScheduled" and c.reason == "Unschedulable"
            for p in pending
            for c in p.status.conditions or []
        )

    wait_for(one_left_over, empty, "three pods on three nodes and the fourth unschedulable")
    assert len(set(bound(core, "solo"))) == 3


def bare_pod(name: str, node: str | None = None, cpu: str = "100m", **spec: Any) -> dict[str, Any]:
    """A pod without a controller, labelled app=<name>, pinned to ``node`` if given."""
    container = {"name": "a", "image": "a", "resources": {"requests": {"cpu": cpu}}}
    pinned = {"nodeSelector": {"kubernetes.io/hostname": node}} if node else {}
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [container], **pinned, **spec},
    }


def unschedulable(core: client.CoreV1Api, name: str) -> bool:
    conditions = core.read_namespaced_pod(name, "default").status.conditions or []
    return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)


def test_an_unschedulable_pod_is_placed_where_room_appears(empty: SandboxClient) -> None:
    core = client.CoreV1Api(empty.kube())
    names = sorted(n.metadata.name for n in core.list_node().items)
    for node in names:  # most of every node's CPU taken
        core.create_namespaced_pod("default", bare_pod(f"ballast-{node}", node, cpu="1500m"))
    core.create_namespaced_pod("default", bare_pod("big", cpu="1000m"))
    wait_for(lambda: unschedulable(core, "big"), empty, "the big pod to fit nowhere")
    core.delete_namespaced_pod(f"ballast-{names[-1]}", "default", grace_period_seconds=0)
    wait_for(lambda: bool(bound(core, "big")), empty, "the big pod to be scheduled")
    assert bound(core, "big") == [names[-1]]


def test_a_pod_kept_off_by_a_placed_pods_anti_affinity_may_go_anywhere_once_it_leaves(
    empty: SandboxClient,
) -> None:
    core = client.CoreV1Api(empty.kube())
    names = sorted(n.metadata.name for n in core.list_node().items)
    # Every node is linux: the guard's term keeps the intruder off all of them, from the last node.
    term = {"labelSelector": {"matchLabels": {"app": "intruder"}}, "topologyKey": "kubernetes.io/os"}
    affinity = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    core.create_namespaced_pod("default", bare_pod("guard", names[-1], affinity=affinity))
    wait_for(lambda: bool(bound(core, "guard")), empty, "the guard to be placed")
    core.create_namespaced_pod("default", bare_pod("intruder"))
    wait_for(lambda: unschedulable(core, "intruder"), empty, "the intruder to be kept off")
    core.delete_namespaced_pod("guard", "default", grace_period_seconds=0)
    wait_for(lambda: bool(bound(core, "intruder")), empty, "the intruder to be scheduled")
    assert bound(core, "intruder") == [names[0]]  # all nodes alike again: the first by name


# ----- nodes and DaemonSets ----------------------------------------------------------------------


def test_a_daemonset_replaces_its_pod_only_once_the_old_one_is_gone(empty: SandboxClient) -> None:
    core = client.CoreV1Api(empty.kube())
    client.AppsV1Api(empty.kube()).create_namespaced_daemon_set("default", workload("slow", **SLOW_STOP))
    wait_for(lambda: sum(is_ready(p) for p in pods_of(core, "slow")) == 3, empty, "a pod on every node")
    old = pods_of(core, "slow")[0]
    core.delete_namespaced_pod(old.metadata.name, "default")
    settle(empty)
    on_node = [p for p in pods_of(core, "slow") if p.spec.node_name == old.spec.node_name]
    assert [p.metadata.uid for p in on_node] == [old.metadata.uid]  # still shutting down, alone
    empty.advance(30)

    def replaced() -> bool:
        here = [p for p in pods_of(core, "slow") if p.spec.node_name == old.spec.node_name]
        return len(here) == 1 and here[0].metadata.uid != old.metadata.uid

    wait_for(replaced, empty, "the replacement")


def test_a_node_is_tainted_not_ready_until_ready_and_daemonsets_leave_it_alone(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    agent = next(w for w in WORKLOADS if w["kind"] == "DaemonSet")
    cluster = start_sandbox(
        timing=QUICK_TIMING, kubernetes={**QUICK_KUBERNETES, "never_ready": ["new"], "workloads": [agent]}
    )
    core = client.CoreV1Api(cluster.kube())
    assert all(not n.spec.taints for n in core.list_node().items)  # Ready nodes carry no not-ready taint
    new = launch_new_image(cluster, core)
    wait_for(lambda: new in nodes(core), cluster, "the node to register")
    settle(cluster)
    node = nodes(core)[new]
    assert {(t.key, t.effect) for t in node.spec.taints} == {
        ("node.kubernetes.io/not-ready", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
    }
    assert not core.list_namespaced_pod("default", field_selector=f"spec.nodeName={node.metadata.name}").items
    daemonset = client.AppsV1Api(cluster.kube()).read_namespaced_daemon_set("agent", "default")
    assert daemonset.status.desired_number_scheduled == 3


def test_an_instance_that_stops_before_joining_never_joins(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    cluster = start_sandbox(kubernetes={"join_seconds": 10})
    core = client.CoreV1Api(cluster.kube())
    cluster.set_desired(4)
    (new,) = set(cluster.states()) - set(nodes(core))
    cluster.advance(FROZEN_TIMING["boot_seconds"])  # running: it would join 10 s from now
    cluster.ec2.terminate_instances(InstanceIds=[new])
    cluster.advance(60)
    assert new not in nodes(core)


# ----- Endpoints ------------------------------------------------------------------------------------


def test_endpoints_resolve_named_ports_and_leave_terminating_pods_out(empty: SandboxClient) -> None:
    core = client.CoreV1Api(empty.kube())
    ports = {"ports": [{"name": "http", "containerPort": 8080}]}
    api = deployment("api", 2, **{**SLOW_STOP, "container": {**SLOW_STOP["container"], **ports}})
    client.AppsV1Api(empty.kube()).create_namespaced_deployment("default", api)
    for name, publish in (("api", False), ("api-all", True)):
        service = {
            "metadata": {"name": name},
            "spec": {
                "selector": {"app": "api"},
                "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
                "publishNotReadyAddresses": publish,
            },
        }
        core.create_namespaced_service("default", service)

    def addresses(name: str) -> list[str]:
        subsets = core.read_namespaced_endpoints(name, "default").subsets or []
        return sorted(a.target_ref.name for s in subsets for a in s.addresses or [])

    wait_for(lambda: len(addresses("api")) == 2, empty, "both pods in the endpoints")
    (subset,) = core.read_namespaced_endpoints("api", "default").subsets
    assert [(p.name, p.port, p.protocol) for p in subset.ports] == [("web", 8080, "TCP")]

    leaving, failing = (p.metadata.name for p in pods_of(core, "api"))
    core.delete_namespaced_pod(leaving, "default")
    # The other stays but stops being Ready (its readiness probe failing).
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    core.patch_namespaced_pod_status(failing, "default", not_ready)
    settle(empty)
    (subset,) = core.read_namespaced_endpoints("api", "default").subsets
    assert [a.target_ref.name for a in subset.not_ready_addresses] == [failing]
    subsets = core.read_namespaced_endpoints("api", "default").subsets
    assert leaving not in {
        a.target_ref.name for s in subsets for a in [*(s.addresses or []), *(s.not_ready_addresses or [])]
    }
    assert subset.addresses is None
    # publishNotReadyAddresses: every pod is an address, whether Ready or terminating.
    assert addresses("api-all") == sorted([leaving, failing])


# ----- the disruption controller ---------------------------------------------------------------------


def budget(name: str, app: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": app}}, **spec}}


def test_a_deployment_mid_rollout_is_expected_once(empty: SandboxClient) -> None:
    core, apps = client.CoreV1Api(empty.kube()), client.AppsV1Api(empty.kube())
    policy = client.PolicyV1Api(empty.kube())
    apps.create_namespaced_deployment("default", deployment("api", 3, **SLOW_STOP))
    policy.create_namespaced_pod_disruption_budget("default", budget("api", "api", maxUnavailable=1))
    wait_for(lambda: sum(is_ready(p) for p in pods_of(core, "api")) == 3, empty, "three Ready pods")
    template_change = {"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}}
    apps.patch_namespaced_deployment("api", "default", template_change)

    def both_replicasets() -> bool:  # the old pods still stopping, the new ones Ready and counted
        owners = {p.metadata.owner_references[0].name for p in pods_of(core, "api")}
        status = policy.read_namespaced_pod_disruption_budget("api", "default").status
        return len(owners) == 2 and status.current_healthy == 3

    wait_for(both_replicasets, empty, "pods of both ReplicaSets")
    status = policy.read_namespaced_pod_disruption_budget("api", "default").status
    assert (status.expected_pods, status.desired_healthy, status.disruptions_allowed) == (3, 2, 1)


def test_pods_without_a_controller_are_left_out_with_a_warning(cluster: SandboxClient) -> None:
    core, policy = client.CoreV1Api(cluster.kube()), client.PolicyV1Api(cluster.kube())
    stray = {
        "metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "a", "image": "a"}]},
    }
    core.create_namespaced_pod("default", stray)
    policy.patch_namespaced_pod_disruption_budget("web", "default", {"spec": {"minAvailable": "50%"}})

    def warned() -> bool:
        events = core.list_namespaced_event("default").items
        return any(e.reason == "UnmanagedPods" and e.involved_object.name == "web" for e in events)

    wait_for(warned, cluster, "the UnmanagedPods warning")
    status = policy.read_namespaced_pod_disruption_budget("web", "default").status
    assert status.expected_pods == 3  # the Deployment's replicas; the stray pod is not expected
    (event,) = [e for e in core.list_namespaced_event("default").items if e.reason == "UnmanagedPods"]
    assert event.type == "Warning"
    assert "were found to be unmanaged" in event.message


def test_a_budget_whose_scale_cannot_be_read_fails_safe(cluster: SandboxClient) -> None:
    policy = client.PolicyV1Api(cluster.kube())
    policy.create_namespaced_pod_disruption_budget("default", budget("agents", "db", maxUnavailable=1))
    wait_for(
        lambda: policy.read_namespaced_pod_disruption_budget("agents", "default").status.expected_pods == 2,
        cluster,
        "the budget's status",
    )
    # DaemonSet pods have no scale the disruption controller can read.
    policy.patch_namespaced_pod_disruption_budget(
        "agents", "default", {"spec": {"selector": {"matchLabels": {"app": "agent"}}}}
    )

    def failed() -> bool:
        conditions = policy.read_namespaced_pod_disruption_budget("agents", "default").status.conditions or []
        return any(c.reason == "SyncFailed" for c in conditions)

    wait_for(failed, cluster, "the fail-safe")
    read = policy.read_namespaced_pod_disruption_budget("agents", "default")
    (condition,) = read.status.conditions
    assert (condition.type, condition.status) == ("DisruptionAllowed", "False")
    assert condition.message.startswith('found no controllers for pod "agent-')
    assert read.status.disruptions_allowed == 0
    # The rest of the status is as the last successful pass left it.
    assert (read.status.expected_pods, read.status.desired_healthy, read.status.current_healthy) == (2, 1, 2)
    assert read.status.observed_generation == 1 < read.metadata.generation
