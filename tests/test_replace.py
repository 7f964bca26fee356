"""`nodeswap replace` end to end: the real CLI process against the sandbox over HTTP, with the real boto3
and Kubernetes clients. A full replacement leaves the group as it was, on the new image, with no PDB
violated and no pod lost; preflight refusals and bad input change nothing; a second run is refused
while the first holds the lock; nothing-to-do exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from nodeswap.sandbox.scenario import load_scenario
from tests.sandbox_client import SandboxClient

DEMO = Path(__file__).resolve().parents[1] / "nodeswap" / "sandbox" / "demo.yaml"
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


def demo_scenario(**changes: Any) -> dict[str, Any]:
    scenario = load_scenario(DEMO).model_dump(mode="json")
    scenario.update(changes)
    return scenario


@pytest.fixture
def world(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    return start_sandbox(**demo_scenario())


@pytest.fixture
def cli(world: SandboxClient, tmp_path: Path) -> Cli:
    return Cli(world, tmp_path)


def ours(world: SandboxClient, mutating: bool | None = None) -> list[dict[str, Any]]:
    requests = world.admin("GET", "report")["requests"]
    return [
        r
        for r in requests
        if NODESWAP_UA in r["user_agent"] and (mutating is None or r["mutating"] == mutating)
    ]


def assert_converged(world: SandboxClient, before: dict[str, Any], version: str) -> None:
    """The final state of a rollout: new image everywhere, the group and the cluster as they were."""
    group = world.group()
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (
        before["MinSize"],
        before["MaxSize"],
        before["DesiredCapacity"],
    )
    assert group["SuspendedProcesses"] == before["SuspendedProcesses"]
    assert not [t for t in group["Tags"] if t["Key"].startswith("nodeswap.io/")]
    serving = [i for i in group["Instances"] if i["LifecycleState"] == "InService"]
    assert len(serving) == before["DesiredCapacity"]
    assert {i["LaunchTemplate"]["Version"] for i in serving} == {version}
    core = client.CoreV1Api(world.kube())
    for node in core.list_node().items:
        if node.spec.provider_id.rsplit("/", 1)[1] in {i["InstanceId"] for i in serving}:
            assert not node.spec.unschedulable
            assert not [t for t in node.spec.taints or [] if t.key.startswith("nodeswap.io/")]
            assert "cluster-autoscaler.kubernetes.io/scale-down-disabled" not in (
                node.metadata.annotations or {}
            )
    apps = client.AppsV1Api(world.kube())
    for deployment in apps.list_namespaced_deployment("default").items:
        assert deployment.status.ready_replicas == deployment.spec.replicas
    for statefulset in apps.list_namespaced_stateful_set("default").items:
        assert statefulset.status.ready_replicas == statefulset.spec.replicas
    report = world.admin("GET", "report")
    assert report["pdb_violations"] == []
    assert report["lost_pods"] == []


def test_replace_rolls_the_group_onto_the_new_image(world: SandboxClient, cli: Cli) -> None:
    before = world.group()
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replaced 3 nodes" in result.stdout
    assert_converged(world, before, "2")
    # The termination hook was completed for every old instance: none waited out its heartbeat timeout.
    completions = [r for r in ours(world) if r["operation"] == "CompleteLifecycleAction"]
    assert len(completions) == 3
    assert all(r["status"] == 200 for r in completions)
    assert not [i for i in world.group()["Instances"] if i["LifecycleState"] == "Terminating:Wait"]
    again = cli("replace", "--asg", "workers", "--yes")
    assert again.returncode == 0
    assert "nothing to replace" in again.stdout


def test_json_output_is_one_event_per_line_and_a_summary(world: SandboxClient, cli: Cli) -> None:
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--output", "json")
    assert result.returncode == 0, result.stderr
    lines = [yaml.safe_load(line) for line in result.stdout.splitlines()]
    assert {"group", "phase", "message", "time"} <= set(lines[0])
    (summary,) = lines[-1]["summary"]
    assert summary["nodes_replaced"] == 3
    assert set(summary["phase_seconds"]) == {"surge", "join", "fence", "drain", "settle", "restore"}


def test_dry_run_changes_nothing(world: SandboxClient, cli: Cli) -> None:
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    world.ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"ImageId": cli.new_image()}
    )
    result = cli("replace", "--asg", "workers", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("replace i-") == 3
    assert ours(world, mutating=True) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--asg", "nope"], "no Auto Scaling group named nope in region us-east-1"),
        (
            ["--asg", "workers", "--region", "eu-west-1"],
            "no Auto Scaling group named workers in region eu-west-1",
        ),
        (["--asg", "workers", "--drain-timeout", "soon"], "--drain-timeout: 'soon' is not a duration"),
        (["--asg", "workers", "--kubeconfig", "/nonexistent"], "cannot load /nonexistent"),
        (["--asg-tag", "novalue"], "--asg-tag: 'novalue' is not KEY=VALUE"),
        ([], "name the groups with --asg"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(
    world: SandboxClient, cli: Cli, args: list[str], says: str
) -> None:
    result = cli("replace", *args, "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert ours(world, mutating=True) == []


def test_group_with_no_nodes_in_the_cluster(world: SandboxClient, cli: Cli, tmp_path: Path) -> None:
    core = client.CoreV1Api(world.kube())
    for node in core.list_node().items:  # as if the kubeconfig pointed at another cluster
        core.patch_node(
            node.metadata.name, {"spec": {"providerID": f"aws:///us-east-1a/i-elsewhere{node.metadata.name}"}}
        )
    result = cli("replace", "--asg", "workers", "--yes")
    assert result.returncode == 2
    assert "is a node of this cluster" in result.stderr
    assert ours(world, mutating=True) == []


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (
            lambda w: client.PolicyV1Api(w.kube()).patch_namespaced_pod_disruption_budget(
                "web", "default", {"spec": {"maxUnavailable": 0}}
            ),
            "PodDisruptionBudget default/web",
        ),
        (
            lambda w: client.CoreV1Api(w.kube()).create_namespaced_pod(
                "default",
                client.V1Pod(
                    metadata=client.V1ObjectMeta(name="bare"),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="c", image="x")],
                        node_selector={"topology.kubernetes.io/zone": "us-east-1a"},
                    ),
                ),
            ),
            "use --force to delete it anyway",
        ),
        (
            lambda w: client.PolicyV1Api(w.kube()).create_namespaced_pod_disruption_budget(
                "default",
                client.V1PodDisruptionBudget(
                    metadata=client.V1ObjectMeta(name="web-too"),
                    spec=client.V1PodDisruptionBudgetSpec(
                        max_unavailable=1, selector=client.V1LabelSelector(match_labels={"app": "web"})
                    ),
                ),
            ),
            "selected by more than one PodDisruptionBudget",
        ),
        (
            lambda w: w.autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", MaxSize=3),
            None,
        ),  # without --no-raise-max nodeswap may raise MaxSize: not a blocker
    ],
)
def test_preflight_refusals_change_nothing(
    world: SandboxClient, cli: Cli, setup: Callable[[SandboxClient], Any], says: str | None
) -> None:
    setup(world)
    world.sandbox.scheduler.settle(5)  # let the cluster catch up with the change
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--dry-run")
    if says is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 3, result.stdout + result.stderr
    assert says in result.stderr
    assert ours(world, mutating=True) == []


def test_max_size_headroom_refusal(world: SandboxClient, cli: Cli) -> None:
    world.autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", MaxSize=3)
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    world.ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"ImageId": cli.new_image()}
    )
    result = cli("replace", "--asg", "workers", "--no-raise-max", "--yes")
    assert result.returncode == 3
    assert "needs MaxSize 6, it is 3" in result.stderr
    assert ours(world, mutating=True) == []


def test_a_second_run_is_refused_while_the_first_holds_the_lock(world: SandboxClient, cli: Cli) -> None:
    now = datetime.now(UTC)
    client.CoordinationV1Api(world.kube()).create_namespaced_lease(
        "kube-system",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="nodeswap-workers"),
            spec=client.V1LeaseSpec(
                holder_identity="ops-laptop/4242/abcd",
                lease_duration_seconds=60,
                acquire_time=now,
                renew_time=now,
            ),
        ),
    )
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 1
    assert "being replaced by ops-laptop/4242/abcd" in result.stderr
    assert ours(world, mutating=True) == []  # refused before the AMI was baked or anything else changed
    assert world.group()["DesiredCapacity"] == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        ("aws", "CreateLaunchTemplateVersion"),  # the AMI baked, nothing recorded yet
        ("aws", "UpdateAutoScalingGroup"),  # surging
        ("kube", "eviction"),  # draining
        ("aws", "TerminateInstanceInAutoScalingGroup"),  # retiring: an instance left waiting on its hook
    ],
    ids=lambda point: point[1],
)
def test_a_killed_run_is_finished_by_running_the_same_command(
    world: SandboxClient, cli: Cli, point: tuple[str, str]
) -> None:
    before = world.group()
    reached = threading.Event()
    record = world.sandbox.record
    add = record.add

    def watch_for_point(**entry: Any) -> None:
        add(**entry)
        name = entry["subresource"] if entry["api"] == "kube" else entry["operation"]
        if NODESWAP_UA in entry["user_agent"] and (entry["api"], name) == point and entry["status"] < 300:
            reached.set()

    record.add = watch_for_point  # type: ignore[method-assign]
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--lock-duration", "3s"]
    first = subprocess.Popen(
        cli.command(*command), env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert reached.wait(120), f"the run never reached {point}"
    finally:
        first.kill()  # SIGKILL: no cleanup, the lock stays until it expires
        first.wait()
    record.add = add  # type: ignore[method-assign]

    lease = client.CoordinationV1Api(world.kube()).read_namespaced_lease("nodeswap-workers", "kube-system")
    expires = lease.spec.renew_time + timedelta(seconds=lease.spec.lease_duration_seconds)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)  # no event marks an expiry
    second = cli(*command)
    assert second.returncode == 0, second.stdout + second.stderr
    assert_converged(
        world,
        before,
        str(
            len(
                world.ec2.describe_launch_template_versions(
                    LaunchTemplateId=before["LaunchTemplate"]["LaunchTemplateId"]
                )["LaunchTemplateVersions"]
            )
        ),
    )
    # Every old instance's hook was completed by one run or the other: none waits out its timeout.
    world.advance(0)
    assert not [i for i in world.group()["Instances"] if i["LifecycleState"] == "Terminating:Wait"]


@pytest.mark.slow
def test_the_larger_rehearsal_replaces_twelve_nodes_without_violations(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    large = load_scenario(DEMO.parents[2] / "configs" / "rehearsal-large.yaml").model_dump(mode="json")
    world = start_sandbox(**large)
    cli = Cli(world, tmp_path)
    before = world.group()
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replaced 12 nodes, evicted 39 pods" in result.stdout
    assert_converged(world, before, "2")


def test_config_file_supplies_options_and_flags_win(world: SandboxClient, cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "replace.yaml"
    config.write_text("asg: [workers]\ndrain-timeout: soon\n")
    rejected = cli("replace", "--config", str(config), "--yes")
    assert rejected.returncode == 2
    assert "key drain_timeout" in rejected.stderr
    config.write_text("asg: [workers]\ndrain-timeout: 10m\noutput: json\n")
    planned = cli(
        "replace", "--config", str(config), "--ami", cli.new_image(), "--dry-run", "--output", "text"
    )
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.count("replace i-") == 3  # text: the flag won over the file's json
    assert ours(world, mutating=True) == []


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_rerun_continues(world: SandboxClient, cli: Cli) -> None:
    before = world.group()
    reached = threading.Event()
    record = world.sandbox.record
    add = record.add

    def watch_for_eviction(**entry: Any) -> None:
        add(**entry)
        if entry.get("subresource") == "eviction" and NODESWAP_UA in entry["user_agent"]:
            reached.set()

    record.add = watch_for_eviction  # type: ignore[method-assign]
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = subprocess.Popen(
        cli.command(*command), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert reached.wait(120)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=60)
    record.add = add  # type: ignore[method-assign]
    assert first.returncode == 130
    assert "run the same command again to continue" in stderr
    assert "Traceback" not in stderr
    leases = client.CoordinationV1Api(world.kube()).list_namespaced_lease("kube-system").items
    assert "nodeswap-workers" not in {lease.metadata.name for lease in leases}  # released on the way out
    second = cli(*command)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "continuing the rollout recorded on the group" in second.stdout
    assert_converged(world, before, "2")


@pytest.mark.parametrize(("surge", "waves"), [("1", [1, 1, 1]), ("34%", [2, 1])])
def test_waves_surge_a_few_instances_at_a_time(
    world: SandboxClient, cli: Cli, surge: str, waves: list[int]
) -> None:
    before = world.group()
    result = cli(
        "replace",
        "--asg",
        "workers",
        "--ami",
        cli.new_image(),
        "--yes",
        "--surge",
        surge,
        "--max-unavailable",
        "1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_converged(world, before, "2")
    desired = [
        int(r["target"]["DesiredCapacity"][0])
        for r in ours(world)
        if r["operation"] == "UpdateAutoScalingGroup" and "DesiredCapacity" in r["target"]
    ]
    assert desired == [3 + wave for wave in waves]  # each wave surges by its size, no more
    order = [
        r["operation"]
        for r in ours(world)
        if r["operation"] in ("UpdateAutoScalingGroup", "TerminateInstanceInAutoScalingGroup")
        and ("DesiredCapacity" in r["target"] or r["operation"].startswith("Terminate"))
    ]
    expected = []
    for wave in waves:  # one old node at a time (--max-unavailable 1), retired as soon as it is drained
        expected += ["UpdateAutoScalingGroup", *["TerminateInstanceInAutoScalingGroup"] * wave]
    assert order == expected


def test_invalid_surge_is_rejected(world: SandboxClient, cli: Cli) -> None:
    result = cli("replace", "--asg", "workers", "--surge", "0", "--yes")
    assert result.returncode == 2
    assert "--surge: '0' is not a number of instances or a percentage" in result.stderr
    assert ours(world, mutating=True) == []


def test_a_scaling_activity_in_progress_refuses(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    world = start_sandbox(**demo_scenario(timing={"boot_seconds": 60, "shutdown_seconds": 1}))
    cli = Cli(world, tmp_path)
    world.autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=4)  # one Pending
    mutations = len(ours(world, mutating=True))
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 3
    assert "a scaling activity is in progress" in result.stderr
    assert len(ours(world, mutating=True)) == mutations


def test_nodeswap_owns_the_launch_hook_when_asked(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    scenario = demo_scenario()
    scenario["groups"][0]["lifecycle_hooks"].append(
        {
            "name": "bootstrap",
            "transition": "launching",
            "heartbeat_timeout": 600,
            "default_result": "ABANDON",
        }
    )
    world = start_sandbox(**scenario)
    cli = Cli(world, tmp_path)
    before = world.group()
    result = cli(
        "replace",
        "--asg",
        "workers",
        "--ami",
        cli.new_image(),
        "--yes",
        "--launch-hook",
        "bootstrap",
        "--join-timeout",
        "60s",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("completed launch hook") == 3
    assert_converged(world, before, "2")


def test_ami_is_refused_for_a_mixed_instances_group(world: SandboxClient, cli: Cli) -> None:
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    world.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="mixed",
        MinSize=1,
        MaxSize=2,
        DesiredCapacity=1,
        VPCZoneIdentifier=world.group()["VPCZoneIdentifier"],
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "1"},
                "Overrides": [{"InstanceType": "m5.large"}, {"InstanceType": "m5a.large"}],
            }
        },
    )
    world.sandbox.scheduler.settle(10)  # its instance boots and joins
    mutations = len(ours(world, mutating=True))
    result = cli("replace", "--asg", "mixed", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "mixed instances policy" in result.stderr
    assert len(ours(world, mutating=True)) == mutations


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--ami", "ami-0123456789abcdef0"], "--ami: no image ami-0123456789abcdef0 in region us-east-1"),
        (["--grace-period", "-1"], "--grace-period"),
    ],
)
def test_bad_ami_or_grace_period_is_rejected_before_anything_changes(
    world: SandboxClient, cli: Cli, args: list[str], says: str
) -> None:
    result = cli("replace", "--asg", "workers", "--yes", *args)
    assert result.returncode == 2
    assert says in result.stderr
    assert ours(world, mutating=True) == []


def test_all_replaces_each_instance_once(world: SandboxClient, cli: Cli) -> None:
    before = world.group()
    result = cli("replace", "--asg", "workers", "--all", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replaced 3 nodes" in result.stdout
    old = {i["InstanceId"] for i in before["Instances"]}
    serving = {i["InstanceId"] for i in world.group()["Instances"] if i["LifecycleState"] == "InService"}
    assert len(serving) == 3
    assert not serving & old
    assert_converged(world, before, "1")


def test_a_pod_that_cannot_be_evicted_keeps_its_node(world: SandboxClient, cli: Cli) -> None:
    """A resumed run still refuses on pods it may not evict, and never terminates their node."""
    core = client.CoreV1Api(world.kube())
    node = core.read_namespaced_pod("db-0", "default").spec.node_name
    world.autoscaling.create_or_update_tags(
        Tags=[
            {  # as if an earlier run had started
                "ResourceId": "workers",
                "ResourceType": "auto-scaling-group",
                "Key": "nodeswap.io/original-capacity",
                "Value": "3,6,3",
                "PropagateAtLaunch": False,
            }
        ]
    )
    core.create_namespaced_pod(
        "default",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="scratch"),
            spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="c", image="x")]),
        ),
    )
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "pod default/scratch" in result.stderr
    assert "use --force to delete it anyway" in result.stderr
    assert not [r for r in ours(world) if r["operation"] == "TerminateInstanceInAutoScalingGroup"]
