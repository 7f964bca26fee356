"""The sandbox at the size the benchmark measures (50 nodes, 1,000 pods) still behaves: everything
starts Ready and evictions are answered and replaced. Timings are reported by
benchmarks/sandbox_scale.py, not asserted here."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client

from tests.sandbox.test_kube_api import wait_for
from tests.sandbox_client import SandboxClient

pytestmark = pytest.mark.slow


def test_fifty_nodes_and_a_thousand_pods(start_sandbox: Callable[..., SandboxClient]) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "load"},
        "spec": {
            "replicas": 1000,
            "selector": {"matchLabels": {"app": "load"}},
            "template": {
                "metadata": {"labels": {"app": "load"}},
                "spec": {"containers": [{"name": "c", "image": "a"}]},
            },
        },
    }
    cluster = start_sandbox(
        groups=[{"min_size": 50, "max_size": 100, "desired_capacity": 50, "instance_type": "m5.2xlarge"}],
        kubernetes={"pod_start_seconds": 0.1, "workloads": [deployment]},
    )
    core = client.CoreV1Api(cluster.kube())
    assert len(core.list_node().items) == 50
    pods = core.list_namespaced_pod("default").items
    assert len(pods) == 1000
    assert all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods)
    node = pods[0].spec.node_name
    on_node = core.list_namespaced_pod("default", field_selector=f"spec.nodeName={node}").items
    core.patch_node(node, {"spec": {"unschedulable": True}})
    for pod in on_node:
        core.create_namespaced_pod_eviction(
            pod.metadata.name,
            "default",
            client.V1Eviction(metadata=client.V1ObjectMeta(name=pod.metadata.name)),
        )

    def replaced() -> bool:
        running = [p for p in core.list_namespaced_pod("default").items if p.status.phase == "Running"]
        return len(running) == 1000 and all(p.spec.node_name != node for p in running)

    wait_for(replaced, cluster, "the evicted pods to run elsewhere", seconds=60)
