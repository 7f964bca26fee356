"""The simulated cluster follows the AWS side, and the sandbox reports availability lost.

Instances that run join as Ready nodes; an instance that is terminated turns its node NotReady, its
serving pods are reported lost, the Node goes away and, after pod GC's quarantine, the pods come back
elsewhere. AMIs can be made
to never join or never become Ready. Kubernetes faults: 5xx/429 answers, dropped connections and
cut watches.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from nodeswap.sandbox.kube.cluster import NODE_MONITOR_PERIOD_SECONDS
from nodeswap.sandbox.scenario import KubernetesSpec
from tests.sandbox.test_kube_api import wait_for
from tests.sandbox_client import QUICK_KUBERNETES, QUICK_TIMING, SandboxClient

NODE_MONITOR_GRACE = KubernetesSpec().node_monitor_grace_seconds
POD_GC_QUARANTINE = KubernetesSpec().pod_gc_quarantine_seconds
WORKLOADS = list(yaml.safe_load_all((Path(__file__).parent / "manifests" / "workloads.yaml").read_text()))


@pytest.fixture
def cluster(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    return start_sandbox(
        timing=QUICK_TIMING,
        groups=[{"min_size": 1}],
        kubernetes={**QUICK_KUBERNETES, "workloads": WORKLOADS},
    )


def nodes(core: client.CoreV1Api) -> dict[str, Any]:
    return {node.spec.provider_id.rsplit("/", 1)[1]: node for node in core.list_node().items}


def ready(node: Any) -> str:
    return next(c.status for c in node.status.conditions if c.type == "Ready")


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def on(node: str) -> str:
    return f"spec.nodeName={node}"


def test_scaling_out_joins_new_ready_nodes(cluster: SandboxClient) -> None:
    core = client.CoreV1Api(cluster.kube())
    cluster.set_desired(4)
    (new,) = set(cluster.states()) - set(nodes(core))
    wait_for(
        lambda: new in nodes(core) and ready(nodes(core)[new]) == "True", cluster, "the new node to be Ready"
    )
    node = nodes(core)[new]
    reservation = cluster.ec2.describe_instances(InstanceIds=[new])["Reservations"][0]["Instances"][0]
    assert node.metadata.name == reservation["PrivateDnsName"]
    assert node.spec.provider_id == f"aws:///{reservation['Placement']['AvailabilityZone']}/{new}"
    assert node.metadata.labels["topology.kubernetes.io/zone"] == reservation["Placement"]["AvailabilityZone"]
    assert node.metadata.labels["node.kubernetes.io/instance-type"] == "m5.large"
    wait_for(
        lambda: bool(
            core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node.metadata.name}").items
        ),
        cluster,
        "the DaemonSet to start a pod on the new node",
    )


def test_terminated_instance_loses_its_node_and_pods_come_back(cluster: SandboxClient) -> None:
    core = client.CoreV1Api(cluster.kube())
    victim = core.read_namespaced_pod("db-0", "default").spec.node_name
    instance = next(i for i, n in nodes(core).items() if n.metadata.name == victim)
    serving = {
        p.metadata.name
        for p in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={victim}").items
        if not p.metadata.name.startswith("agent-")
    }
    cluster.autoscaling.terminate_instance_in_auto_scaling_group(
        InstanceId=instance, ShouldDecrementDesiredCapacity=True
    )
    wait_for(lambda: cluster.ec2_state(instance) == "terminated", cluster, "the instance to terminate")

    # Nobody notices the kubelet is gone until its status has gone unrenewed for the grace period,
    # and the Node of a terminated instance is deleted only once it is NotReady.
    assert ready(core.read_node(victim)) == "True"
    assert all(is_ready(p) for p in core.list_namespaced_pod("default", field_selector=on(victim)).items)
    cluster.advance(NODE_MONITOR_GRACE / 2)
    assert ready(core.read_node(victim)) == "True"
    cluster.advance(NODE_MONITOR_GRACE / 2)
    assert ready(core.read_node(victim)) == "Unknown"
    taints = {(t.key, t.effect) for t in core.read_node(victim).spec.taints}
    assert taints >= {
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoSchedule"),
    }
    assert not any(is_ready(p) for p in core.list_namespaced_pod("default", field_selector=on(victim)).items)
    cluster.advance(NODE_MONITOR_PERIOD_SECONDS)  # the cloud node lifecycle controller's next look
    wait_for(
        lambda: victim not in {n.metadata.name for n in core.list_node().items}, cluster, "the Node to go"
    )
    # Its pods stay, bound to the missing node, until pod GC's quarantine has passed.
    left = {p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector=on(victim)).items}
    assert left >= serving
    cluster.advance(POD_GC_QUARANTINE)
    wait_for(
        lambda: (
            all(
                p.status.phase == "Running" and p.spec.node_name != victim
                for p in core.list_namespaced_pod("default", label_selector="app in (web,db)").items
            )
            and len(core.list_namespaced_pod("default", label_selector="app in (web,db)").items) == 5
        ),
        cluster,
        "web and db to run elsewhere",
    )
    report = cluster.admin("GET", "report")
    assert sorted(p["name"] for p in report["lost_pods"]) == sorted(serving)  # lost once, when it stopped
    assert all(p["node"] == victim for p in report["lost_pods"])
    (db,) = [w for w in report["under_strength"] if w["name"] == "db"]  # db-0 was lost, then came back
    assert (db["kind"], db["ongoing"], db["desired"]) == ("StatefulSet", False, 2)
    assert db["seconds"] > 0


def test_pods_of_a_deleted_node_whose_instance_stops_are_lost_once(cluster: SandboxClient) -> None:
    core = client.CoreV1Api(cluster.kube())
    victim = core.read_namespaced_pod("db-0", "default").spec.node_name
    instance = next(i for i, n in nodes(core).items() if n.metadata.name == victim)
    serving = sorted(
        p.metadata.name
        for p in core.list_pod_for_all_namespaces(field_selector=on(victim)).items
        if not p.metadata.name.startswith("agent-")
    )
    core.delete_node(victim)
    assert cluster.admin("GET", "report")["lost_pods"] == []  # its kubelet still runs them
    cluster.ec2.terminate_instances(InstanceIds=[instance])  # and now it stops, with them
    assert sorted(p["name"] for p in cluster.admin("GET", "report")["lost_pods"]) == serving
    cluster.advance(POD_GC_QUARANTINE)
    wait_for(lambda: not core.list_pod_for_all_namespaces(field_selector=on(victim)).items, cluster, "pod GC")
    assert sorted(p["name"] for p in cluster.admin("GET", "report")["lost_pods"]) == serving


def test_losing_a_node_under_a_budget_is_a_pdb_violation(start_sandbox: Callable[..., SandboxClient]) -> None:
    # Every web pod on one node: losing it drops the budget (minAvailable 2 of 3) to no healthy pod.
    pinned = [dict(w) for w in WORKLOADS]
    web = yaml.safe_load(yaml.safe_dump(pinned[0]))
    web["spec"]["template"]["spec"]["nodeSelector"] = {"topology.kubernetes.io/zone": "us-east-1a"}
    cluster = start_sandbox(
        timing=QUICK_TIMING,
        groups=[{"min_size": 1}],
        kubernetes={**QUICK_KUBERNETES, "workloads": [web, pinned[1]]},
    )
    core = client.CoreV1Api(cluster.kube())
    zone_a = next(
        i for i, n in nodes(core).items() if n.metadata.labels["topology.kubernetes.io/zone"] == "us-east-1a"
    )
    assert cluster.admin("GET", "report")["pdb_violations"] == []
    cluster.ec2.terminate_instances(InstanceIds=[zone_a])
    cluster.advance(NODE_MONITOR_GRACE)  # the node goes NotReady, its pods with it
    wait_for(lambda: bool(cluster.admin("GET", "report")["pdb_violations"]), cluster, "the violation")
    report = cluster.admin("GET", "report")
    assert len(report["lost_pods"]) == 3
    (violation,) = report["pdb_violations"]
    assert violation["namespace"] == "default"
    assert violation["name"] == "web"
    assert violation["current_healthy"] < violation["desired_healthy"] == 2
    assert violation["ongoing"] is True


def launch_new_image(cluster: SandboxClient, core: client.CoreV1Api) -> str:
    """Bake the new AMI into template version 2 and scale out by one: the new instance's id."""
    template = cluster.group()["LaunchTemplate"]
    new_ami = cluster.admin("GET", "info")["world"]["images"]["new"]
    cluster.ec2.create_launch_template_version(
        LaunchTemplateId=template["LaunchTemplateId"],
        SourceVersion="1",
        LaunchTemplateData={"ImageId": new_ami},
    )
    cluster.set_desired(4)
    (new,) = set(cluster.states()) - set(nodes(core))
    return new


def test_ami_that_never_joins(start_sandbox: Callable[..., SandboxClient]) -> None:
    cluster = start_sandbox(timing=QUICK_TIMING, kubernetes={**QUICK_KUBERNETES, "never_join": ["new"]})
    core = client.CoreV1Api(cluster.kube())
    new = launch_new_image(cluster, core)
    cluster.ec2.get_waiter("instance_running").wait(
        InstanceIds=[new], WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    cluster.advance(60)  # far past the join delay
    assert new not in nodes(core)
    assert len(nodes(core)) == 3


def test_ami_whose_nodes_never_get_ready(start_sandbox: Callable[..., SandboxClient]) -> None:
    cluster = start_sandbox(timing=QUICK_TIMING, kubernetes={**QUICK_KUBERNETES, "never_ready": ["new"]})
    core = client.CoreV1Api(cluster.kube())
    new = launch_new_image(cluster, core)
    wait_for(lambda: new in nodes(core), cluster, "the node to register")
    cluster.advance(60)
    assert ready(nodes(core)[new]) == "False"


@pytest.mark.parametrize(("error", "status"), [("internal", 500), ("unavailable", 503), ("throttle", 429)])
def test_kubernetes_faults(cluster: SandboxClient, error: str, status: int) -> None:
    core = client.CoreV1Api(cluster.kube())
    cluster.admin("PUT", "faults", [{"api": "kube", "operations": ["create:pods/eviction"], "error": error}])
    core.list_namespaced_pod("default")  # another operation: unaffected
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name="db-0", namespace="default"))
    with pytest.raises(ApiException) as failed:
        core.create_namespaced_pod_eviction("db-0", "default", body)
    assert failed.value.status == status
    if error == "throttle":
        assert failed.value.headers["Retry-After"] == "1"
        assert failed.value.body == "Too many requests, please try again later.\n"  # APF: text, no budget
    assert core.read_namespaced_pod("db-0", "default").metadata.deletion_timestamp is None
    (entry,) = [r for r in cluster.admin("GET", "report")["requests"] if r["fault"]]
    assert (entry["api"], entry["operation"], entry["resource"], entry["subresource"]) == (
        "kube",
        "create",
        "pods",
        "eviction",
    )


def test_dropped_connection(cluster: SandboxClient) -> None:
    cluster.admin("PUT", "faults", [{"api": "kube", "operations": ["list"], "error": "drop", "limit": 1}])
    pool = urllib3.PoolManager(retries=False)
    with pytest.raises((urllib3.exceptions.ProtocolError, urllib3.exceptions.HTTPError, socket.error)):
        pool.request("GET", f"{cluster.sandbox.kube_endpoint}/api/v1/pods")
    assert pool.request("GET", f"{cluster.sandbox.kube_endpoint}/api/v1/pods").status == 200


def test_cut_watches_end_open_streams(cluster: SandboxClient) -> None:
    core = client.CoreV1Api(cluster.kube())
    version = core.list_namespaced_config_map("default").metadata.resource_version
    ended = threading.Event()

    def follow() -> None:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=version, timeout_seconds=60
        ):
            pass
        ended.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    wait_for(
        lambda: cluster.admin("POST", "kube/cut-watches", {})["cut"] == 1 or ended.is_set(),
        cluster,
        "the watch",
    )
    assert ended.wait(10)
