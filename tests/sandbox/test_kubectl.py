"""The real kubectl against the sandbox's API server: the check that the emulator behaves like one.

get, apply, wait, cordon/uncordon, taint, label, annotate, drain and delete node run unchanged, in real
time, on a cluster whose nodes are the sandbox's EC2 instances.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nodeswap.sandbox.scenario import KubernetesSpec
from tests.sandbox_client import QUICK_KUBERNETES, QUICK_TIMING, SandboxClient

MANIFESTS = Path(__file__).parent / "manifests" / "workloads.yaml"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
POD_GC_QUARANTINE = KubernetesSpec().pod_gc_quarantine_seconds

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KUBECTL, *args], capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> dict[str, object]:
        data: dict[str, object] = json.loads(self(*args, "-o", "json").stdout)
        return data


@pytest.fixture
def cluster(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    return start_sandbox(timing=QUICK_TIMING, kubernetes=QUICK_KUBERNETES)


@pytest.fixture
def kubectl(cluster: SandboxClient, tmp_path: Path) -> Kubectl:
    return Kubectl(cluster.kubeconfig(tmp_path))


@pytest.fixture
def applied(kubectl: Kubectl) -> Kubectl:
    assert "deployment.apps/web created" in kubectl("apply", "-f", str(MANIFESTS)).stdout
    kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    kubectl("rollout", "status", "statefulset/db", "--timeout=60s")
    kubectl("rollout", "status", "daemonset/agent", "--timeout=60s")
    return kubectl


def pods(kubectl: Kubectl, selector: str) -> list[dict[str, object]]:
    items = kubectl.json("get", "pods", "-l", selector)["items"]
    assert isinstance(items, list)
    return items


def test_get_nodes_shows_one_node_per_running_instance(cluster: SandboxClient, kubectl: Kubectl) -> None:
    reservations = cluster.ec2.describe_instances()["Reservations"]
    expected = {
        i["PrivateDnsName"]: f"aws:///{i['Placement']['AvailabilityZone']}/{i['InstanceId']}"
        for r in reservations
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    }
    out = kubectl(
        "get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.providerID}{'\\n'}{end}"
    )
    seen = dict(line.split() for line in out.stdout.strip().splitlines())
    assert seen == expected
    table = kubectl("get", "nodes").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert sorted(line.split()[0] for line in table[1:]) == sorted(expected)
    assert all(line.split()[1] == "Ready" for line in table[1:])


def test_apply_and_wait_see_workloads_ready(applied: Kubectl) -> None:
    applied("wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=30s")
    applied("wait", "--for=condition=Available", "deployment/web", "--timeout=30s")
    assert len(pods(applied, "app=web")) == 3
    assert sorted(p["metadata"]["name"] for p in pods(applied, "app=db")) == ["db-0", "db-1"]  # type: ignore[index]
    nodes = applied.json("get", "nodes")["items"]
    assert isinstance(nodes, list)
    assert len(pods(applied, "app=agent")) == len(nodes)
    reapplied = applied("apply", "-f", str(MANIFESTS)).stdout
    assert "daemonset.apps/agent unchanged" in reapplied


def test_drain_evicts_pods_which_come_back_elsewhere(applied: Kubectl) -> None:
    node = applied.json("get", "pod", "db-0")["spec"]["nodeName"]  # type: ignore[index]
    before = {p["metadata"]["name"]: p for p in pods(applied, "app in (web,db,agent)")}  # type: ignore[index]
    daemon = next(n for n, p in before.items() if n.startswith("agent-") and p["spec"]["nodeName"] == node)  # type: ignore[index]
    db_uid = before["db-0"]["metadata"]["uid"]  # type: ignore[index]

    drained = applied("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
    assert f"node/{node} cordoned" in drained.stdout
    assert "pod/db-0 evicted" in drained.stdout
    assert f"node/{node} drained" in drained.stdout

    applied("rollout", "status", "deployment/web", "--timeout=60s")
    applied("rollout", "status", "statefulset/db", "--timeout=60s")
    after = {p["metadata"]["name"]: p for p in pods(applied, "app in (web,db,agent)")}  # type: ignore[index]
    assert after[daemon]["spec"]["nodeName"] == node  # DaemonSet pods stay  # type: ignore[index]
    for name, pod in after.items():
        if not name.startswith("agent-"):
            assert pod["spec"]["nodeName"] != node, name  # type: ignore[index]
    assert after["db-0"]["metadata"]["uid"] != db_uid  # same name, new pod  # type: ignore[index]
    assert applied.json("get", "node", node)["spec"]["unschedulable"] is True  # type: ignore[index]
    applied("uncordon", node)
    assert "unschedulable" not in applied.json("get", "node", node)["spec"]  # type: ignore[operator]


def test_drain_blocked_by_a_pdb_reports_the_budget_and_fails(applied: Kubectl) -> None:
    applied("patch", "pdb", "web", "--type=merge", "-p", '{"spec":{"minAvailable":3}}')
    applied("wait", "--for=jsonpath={.status.disruptionsAllowed}=0", "pdb/web", "--timeout=30s")
    node = pods(applied, "app=web")[0]["spec"]["nodeName"]  # type: ignore[index]
    drained = applied(
        "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3s", check=False
    )
    assert drained.returncode != 0
    output = drained.stdout + drained.stderr
    assert "Cannot evict pod as it would violate the pod's disruption budget." in output
    assert len([p for p in pods(applied, "app=web") if "deletionTimestamp" not in p["metadata"]]) == 3  # type: ignore[operator]


def test_cordon_taint_label_annotate(kubectl: Kubectl) -> None:
    node = kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout
    kubectl("cordon", node)
    kubectl("taint", "nodes", node, "nodeswap.io/retiring=true:NoSchedule")
    kubectl("label", "nodes", node, "pool=blue")
    kubectl("annotate", "nodes", node, "note=hello")
    seen = kubectl.json("get", "node", node)
    assert seen["spec"]["unschedulable"] is True  # type: ignore[index]
    assert seen["spec"]["taints"] == [  # type: ignore[index]
        {"key": "nodeswap.io/retiring", "value": "true", "effect": "NoSchedule"}
    ]
    assert seen["metadata"]["labels"]["pool"] == "blue"  # type: ignore[index]
    assert seen["metadata"]["annotations"]["note"] == "hello"  # type: ignore[index]
    kubectl("taint", "nodes", node, "nodeswap.io/retiring-")
    kubectl("label", "nodes", node, "pool-")
    kubectl("uncordon", node)
    seen = kubectl.json("get", "node", node)
    assert not seen["spec"].get("taints")  # type: ignore[union-attr]
    assert "pool" not in seen["metadata"]["labels"]  # type: ignore[index]
    assert "unschedulable" not in seen["spec"]  # type: ignore[operator]
    described = kubectl("describe", "node", node).stdout
    assert "ProviderID:" in described


VERSIONED = sorted(Path("/usr/lib/google-cloud-sdk/bin").glob("kubectl.1.*"))


@pytest.mark.slow
@pytest.mark.parametrize("binary", VERSIONED, ids=lambda path: path.name)
def test_other_kubectl_versions_get_cordon_and_drain(
    cluster: SandboxClient, tmp_path: Path, binary: Path
) -> None:
    """kubectl 1.27-1.33 beside the default: reads, node patches and a drain work unchanged. (1.27 and
    1.28 validate apply against OpenAPI v2 protobuf, which this JSON-only server does not serve.)"""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig(tmp_path))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, env=env, timeout=90, check=False
        )
        assert result.returncode == 0, f"{binary.name} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    node = run("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout
    assert "Ready" in run("get", "nodes").stdout
    run("cordon", node)
    run("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=30s")
    run("uncordon", node)
    assert "SchedulingDisabled" not in run("get", "node", node).stdout


def test_a_deleted_node_takes_its_lease_and_leaves_its_pods_running_until_pod_gc(
    cluster: SandboxClient, applied: Kubectl
) -> None:
    node = applied.json("get", "pod", "db-0")["spec"]["nodeName"]
    uid = applied.json("get", "node", node)["metadata"]["uid"]  # type: ignore[index]
    lease = applied.json("get", "lease", node, "-n", "kube-node-lease")
    assert lease["metadata"]["ownerReferences"] == [  # type: ignore[index]
        {"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}
    ]
    on_node = f"spec.nodeName={node}"
    serving = {
        p["metadata"]["name"]  # type: ignore[index]
        for p in applied.json("get", "pods", "--field-selector", on_node)["items"]  # type: ignore[union-attr]
        if not p["metadata"]["name"].startswith("agent-")  # type: ignore[index]
    }
    assert "db-0" in serving

    applied("delete", "node", node)
    # The garbage collector deletes the Lease with its owner.
    applied("wait", "--for=delete", f"lease/{node}", "-n", "kube-node-lease", "--timeout=10s")
    # Pod GC leaves the pods of a missing node alone for its quarantine; the kubelet runs them meanwhile.
    cluster.advance(POD_GC_QUARANTINE - 1)
    listed = applied.json("get", "pods", "--field-selector", on_node)["items"]
    assert serving <= {p["metadata"]["name"] for p in listed}  # type: ignore[index,union-attr]
    assert {p["status"]["phase"] for p in listed} == {"Running"}  # type: ignore[index,union-attr]
    assert cluster.admin("GET", "report")["lost_pods"] == []

    cluster.advance(1)
    assert applied.json("get", "pods", "--field-selector", on_node)["items"] == []
    lost = cluster.admin("GET", "report")["lost_pods"]
    assert sorted(p["name"] for p in lost) == sorted(serving)  # they were serving when pod GC took them
    assert {p["node"] for p in lost} == {node}
    applied("rollout", "status", "statefulset/db", "--timeout=60s")  # db-0 comes back elsewhere
    assert applied.json("get", "pod", "db-0")["spec"]["nodeName"] != node  # type: ignore[index]
