"""What the end-to-end tests share: nodeswap run as a user runs it against a sandbox, and the checks of
the state a rollout (or its undo) leaves."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from nodeswap.sandbox.scenario import DEFAULT_SCENARIO, load_scenario
from tests.sandbox_client import SandboxClient

# The scenario `nodeswap demo` and a fresh `sandbox up` rehearse: the sandbox's default.
DEMO = DEFAULT_SCENARIO
NODESWAP_UA = "nodeswap/"


class Cli:
    """Runs nodeswap as a user would, pointed at one sandbox."""

    def __init__(self, sandbox: SandboxClient, tmp_path: Path) -> None:
        self.sandbox = sandbox
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBECONFIG"))}
        self.env = {**env, **sandbox.sandbox.environment(), "KUBECONFIG": str(sandbox.kubeconfig(tmp_path))}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "nodeswap", *args]

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def new_image(self) -> str:
        image: str = self.sandbox.admin("GET", "info")["world"]["images"]["new"]
        return image


def replaced_in(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path, scenario: dict[str, Any]
) -> tuple[SandboxClient, dict[str, Any], str]:
    """A sandbox of ``scenario``, its group as it was, and the output of a successful `nodeswap replace`
    of the group onto the new image."""
    world = start_sandbox(**scenario)
    cli = Cli(world, tmp_path)
    before = world.group()
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    return world, before, result.stdout


def demo_scenario(**changes: Any) -> dict[str, Any]:
    scenario = load_scenario(DEMO).model_dump(mode="json")
    scenario.update(changes)
    return scenario


def ours(world: SandboxClient, mutating: bool | None = None) -> list[dict[str, Any]]:
    requests = world.admin("GET", "report")["requests"]
    return [
        r
        for r in requests
        if NODESWAP_UA in r["user_agent"] and (mutating is None or r["mutating"] == mutating)
    ]


def changes(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests that changed something, less the lock (a Lease) taken and given back: a refused
    run takes the group's lock before it plans, and changes nothing else."""
    return [r for r in requests if r["mutating"] and r.get("resource") != "leases"]


def assert_converged(world: SandboxClient, before: dict[str, Any], version: str) -> None:
    """The final state of a rollout: new image everywhere, the group and the cluster as they were."""
    group = world.group()
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (
        before["MinSize"],
        before["MaxSize"],
        before["DesiredCapacity"],
    )
    assert group["SuspendedProcesses"] == before["SuspendedProcesses"]
    serving = [i for i in group["Instances"] if i["LifecycleState"] == "InService"]
    assert len(serving) == before["DesiredCapacity"]
    assert {i["LaunchTemplate"]["Version"] for i in serving} == {version}
    apps = client.AppsV1Api(world.kube())
    for deployment in apps.list_namespaced_deployment("default").items:
        assert deployment.status.ready_replicas == deployment.spec.replicas
    for statefulset in apps.list_namespaced_stateful_set("default").items:
        assert statefulset.status.ready_replicas == statefulset.spec.replicas
    assert_no_trace(world)
    report = world.admin("GET", "report")
    assert report["pdb_violations"] == []
    assert report["lost_pods"] == []


def assert_no_trace(world: SandboxClient, group: str = "workers") -> None:
    """No rollout record (tags or ConfigMap), no lock, no serving node fenced or marked by nodeswap."""
    assert not [t for t in world.group(group)["Tags"] if t["Key"].startswith("nodeswap.io/")]
    core = client.CoreV1Api(world.kube())
    names = {c.metadata.name for c in core.list_namespaced_config_map("kube-system").items}
    assert f"nodeswap-rollout-{group}" not in names
    leases = client.CoordinationV1Api(world.kube()).list_namespaced_lease("kube-system").items
    assert f"nodeswap-{group}" not in {lease.metadata.name for lease in leases}
    serving = {i["InstanceId"] for i in world.group(group)["Instances"] if i["LifecycleState"] == "InService"}
    for node in core.list_node().items:
        if node.spec.provider_id.rsplit("/", 1)[1] not in serving:
            continue  # a retired node, on its way out
        assert not node.spec.unschedulable, node.metadata.name
        assert not [t for t in node.spec.taints or [] if t.key.startswith("nodeswap.io/")], node.metadata.name
        annotations = node.metadata.annotations or {}
        assert "cluster-autoscaler.kubernetes.io/scale-down-disabled" not in annotations
        assert "nodeswap.io/scale-down-disabled" not in annotations


def start_until(
    world: SandboxClient, cli: Cli, command: list[str], point: Callable[[dict[str, Any]], bool]
) -> subprocess.Popen[str]:
    """Start nodeswap and return once it has made a request matching ``point`` (then still running)."""
    reached = threading.Event()
    record = world.sandbox.record
    add = record.add

    def watch_for_point(**entry: Any) -> None:
        add(**entry)
        if NODESWAP_UA in entry["user_agent"] and entry["status"] < 300 and point(entry):
            reached.set()

    record.add = watch_for_point  # type: ignore[method-assign]
    process = subprocess.Popen(
        cli.command(*command), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert reached.wait(120), "the run never reached the point"
    finally:
        record.add = add  # type: ignore[method-assign]
    return process


def request(api: str, name: str, **target: Any) -> Callable[[dict[str, Any]], bool]:
    """A point in a run: its request to ``name`` (an AWS operation, or a Kubernetes verb:resource or
    subresource), with these parameters."""

    def matches(entry: dict[str, Any]) -> bool:
        if entry["api"] != api:
            return False
        if api == "aws":
            found = entry["operation"] == name
        else:
            found = name in (entry["subresource"], f"{entry['operation']}:{entry['resource']}")
        return found and all(str(v) in str(entry["target"].get(k)) for k, v in target.items())

    return matches
