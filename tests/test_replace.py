"""`nodeswap replace` end to end: the real CLI process against the sandbox over HTTP, with the real boto3
and Kubernetes clients. A full replacement leaves the group as it was, on the new image, with no PDB
violated and no pod lost; preflight refusals and bad input change nothing; a second run is refused
while the first holds the lock; nothing-to-do exits 0."""

from __future__ import annotations

import json
import signal
import socket
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
from tests.e2e import (
    DEMO,
    Cli,
    assert_converged,
    changes,
    demo_scenario,
    ours,
    replaced_in,
    request,
    start_until,
)
from tests.sandbox_client import SandboxClient


def test_new_nodes_are_kept_from_cluster_autoscaler_while_the_old_ones_drain(
    world: SandboxClient, cli: Cli
) -> None:
    """cluster-autoscaler would scale an empty new node down: every new node carries its
    scale-down-disabled annotation (with the rollout's mark) by the first eviction, and loses it at the
    end (assert_converged)."""
    before = world.group()
    old = {i["InstanceId"] for i in before["Instances"]}
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("kube", "eviction"))
    new = [
        n
        for n in client.CoreV1Api(world.kube()).list_node().items
        if n.spec.provider_id.rsplit("/", 1)[1] in {i["InstanceId"] for i in world.group()["Instances"]} - old
    ]
    stdout, stderr = first.communicate(timeout=180)
    assert first.returncode == 0, stdout + stderr
    assert len(new) == 3
    for node in new:
        annotations = node.metadata.annotations or {}
        assert annotations.get("cluster-autoscaler.kubernetes.io/scale-down-disabled") == "true"
        assert annotations.get("nodeswap.io/scale-down-disabled")  # the rollout's id: restore removes it
    assert_converged(world, before, "2")


def test_an_old_instance_goes_while_its_last_pods_terminate_held_by_its_hook_until_they_are_gone(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    """Once every pod left on an old node is terminating, its instance is terminated, and nodeswap's
    hook holds it until they are gone: Auto Scaling's start of the termination overlaps the pods' last
    seconds, and no pod is cut short (the sandbox counts a pod whose machine stops under it as lost)."""
    scenario = demo_scenario()
    web = next(w for w in scenario["kubernetes"]["workloads"] if w["metadata"]["name"] == "web")
    template = web["spec"]["template"]["spec"]
    template["terminationGracePeriodSeconds"] = 10
    template["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 6}}}
    world, before, output = replaced_in(start_sandbox, tmp_path, scenario)
    assert "its hook holds it until its last pods have terminated" in output
    sent: dict[str, dict[str, datetime]] = {}
    for r in ours(world):
        if r["operation"] in ("TerminateInstanceInAutoScalingGroup", "CompleteLifecycleAction"):
            sent.setdefault(r["target"]["InstanceId"][0], {})[r["operation"]] = datetime.fromisoformat(
                r["time"]
            )
    held = [
        (calls["CompleteLifecycleAction"] - calls["TerminateInstanceInAutoScalingGroup"]).total_seconds()
        for calls in sent.values()
    ]
    assert len(held) == 3
    assert max(held) > 4  # a 6 s preStop ran out under the terminating instance's hook
    assert_converged(world, before, "2")  # no pod lost, no budget broken


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
    assert summary["dry_run"] is False
    assert summary["launch"].endswith("version 2")
    assert summary["image"] == cli.new_image()
    assert summary["max_size_changed"] is False  # 3 + 3 fits the MaxSize of 6
    # The budget that set the pace is the one that held evictions back longest, each by its own wait.
    waits = summary["waited_on_budgets_seconds"]
    assert summary["paced_by"] == max(waits, key=waits.__getitem__) == "default/web"
    assert waits["default/web"] > waits.get("default/db", 0)


def test_the_summary_says_maxsize_was_raised(world: SandboxClient, cli: Cli) -> None:
    world.autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", MaxSize=3)
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MaxSize was raised during the rollout and restored" in result.stdout
    assert world.group()["MaxSize"] == 3


def test_a_lock_that_cannot_be_released_does_not_fail_a_finished_run(world: SandboxClient, cli: Cli) -> None:
    world.admin(
        "PUT", "faults", [{"api": "kube", "operations": ["delete:leases"], "error": "drop", "rate": 1}]
    )
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "could not release the lock nodeswap-workers" in result.stdout
    world.admin("PUT", "faults", [])
    again = cli("replace", "--asg", "workers", "--yes")  # the lock left behind blocks nothing
    assert again.returncode == 0, again.stdout + again.stderr
    assert "took over the lock" in again.stdout


def test_dry_run_changes_nothing(world: SandboxClient, cli: Cli) -> None:
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    world.ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"ImageId": cli.new_image()}
    )
    result = cli("replace", "--asg", "workers", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("replace i-") == 3
    assert "workers: dry run, nothing was changed" in result.stdout
    assert changes(ours(world)) == []
    as_json = cli("replace", "--asg", "workers", "--dry-run", "--output", "json")
    (summary,) = yaml.safe_load(as_json.stdout.splitlines()[-1])["summary"]
    assert summary["dry_run"] is True


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--asg", "nope"], "no Auto Scaling group named nope in region us-east-1"),
        (
            ["--asg", "workers", "--region", "eu-west-1"],
            "no Auto Scaling group named workers in region eu-west-1",
        ),
        (["--asg", "workers", "--drain-timeout", "soon"], "--drain-timeout: 'soon' is not a duration"),
        (["--asg", "workers", "--kubeconfig", "/nonexistent"], "no kubeconfig at /nonexistent"),
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
    assert changes(ours(world)) == []


def test_group_with_no_nodes_in_the_cluster(world: SandboxClient, cli: Cli, tmp_path: Path) -> None:
    core = client.CoreV1Api(world.kube())
    for node in core.list_node().items:  # as if the kubeconfig pointed at another cluster
        core.patch_node(
            node.metadata.name, {"spec": {"providerID": f"aws:///us-east-1a/i-elsewhere{node.metadata.name}"}}
        )
    result = cli("replace", "--asg", "workers", "--yes")
    assert result.returncode == 2
    assert "is a node of this cluster" in result.stderr
    assert changes(ours(world)) == []


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
    assert changes(ours(world)) == []


def test_max_size_headroom_refusal(world: SandboxClient, cli: Cli) -> None:
    world.autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", MaxSize=3)
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    world.ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"ImageId": cli.new_image()}
    )
    result = cli("replace", "--asg", "workers", "--no-raise-max", "--yes")
    assert result.returncode == 3
    assert "needs MaxSize 6, it is 3" in result.stderr
    assert changes(ours(world)) == []


def test_a_second_run_is_refused_while_the_first_holds_the_lock(world: SandboxClient, cli: Cli) -> None:
    """A live holder on another host renews its lease: the run sees the renewal and is refused, before it
    plans or changes anything."""
    leases = client.CoordinationV1Api(world.kube())
    now = datetime.now(UTC)
    leases.create_namespaced_lease(
        "kube-system",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="nodeswap-workers"),
            spec=client.V1LeaseSpec(
                holder_identity="ops-laptop/4242/abcd",
                lease_duration_seconds=6,
                acquire_time=now,
                renew_time=now,
            ),
        ),
    )
    stop = threading.Event()

    def renew() -> None:  # the other run, alive
        while not stop.wait(0.5):
            leases.patch_namespaced_lease(
                "nodeswap-workers", "kube-system", {"spec": {"renewTime": datetime.now(UTC).isoformat()}}
            )

    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
        status = cli("status", "--asg", "workers", "--output", "json")
    finally:
        stop.set()
        renewer.join()
    assert status.returncode == 0, status.stderr
    (group,) = json.loads(status.stdout)["groups"]
    assert group["state"] == "running"
    assert group["lock"]["holder"] == "ops-laptop/4242/abcd"
    assert result.returncode == 1, result.stdout + result.stderr
    assert "is being worked on by ops-laptop/4242/abcd" in result.stderr
    assert "replace i-" not in result.stdout  # no plan printed for a run that cannot go ahead
    assert changes(ours(world)) == []  # refused before the AMI was baked or anything else changed
    assert world.group()["DesiredCapacity"] == 3


def test_a_second_run_on_the_same_host_is_refused_at_once(world: SandboxClient, cli: Cli) -> None:
    """A run of the same group from this host, while the first still runs: refused at once (its holder
    is a live nodeswap here), not after watching the lease for a renewal; the first run finishes."""
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("aws", "UpdateAutoScalingGroup", DesiredCapacity=6))
    started = time.monotonic()
    second = cli(*command)
    refused_after = time.monotonic() - started
    stdout, stderr = first.communicate(timeout=180)
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"is being worked on by {socket.gethostname()}/{first.pid}/" in second.stderr
    assert "waiting up to" not in second.stdout  # no renewal was waited for
    assert refused_after < 20  # the lock lasts 60 s, renewed every 20 s
    assert first.returncode == 0, stdout + stderr


def test_a_lock_nobody_renews_is_taken_over_after_its_duration(world: SandboxClient, cli: Cli) -> None:
    """A holder on another host that stopped renewing: taken over once this run has seen the lease
    unchanged for its duration, by its own clock, whatever the holder's timestamps say."""
    future = datetime.now(UTC) + timedelta(hours=1)  # a holder whose clock runs an hour ahead
    client.CoordinationV1Api(world.kube()).create_namespaced_lease(
        "kube-system",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="nodeswap-workers"),
            spec=client.V1LeaseSpec(
                holder_identity="ops-laptop/4242/abcd",
                lease_duration_seconds=2,
                acquire_time=future,
                renew_time=future,
            ),
        ),
    )
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "took over the lock of ops-laptop/4242/abcd: not renewed for 2 s" in result.stdout


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
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request(*point))
    first.kill()  # SIGKILL: no cleanup; its lock stays
    first.communicate()
    second = cli(*command)
    assert second.returncode == 0, second.stdout + second.stderr
    # The dead run was on this host: its lock is taken over at once, not after its 60 s.
    assert "its process is gone" in second.stdout
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
    world, before, output = replaced_in(start_sandbox, tmp_path, large)
    assert "replaced 12 nodes, evicted 39 pods" in output
    assert_converged(world, before, "2")


def test_config_file_supplies_options_and_flags_win(world: SandboxClient, cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "replace.yaml"
    config.write_text("asg: [workers]\ndrain-timeout: soon\n")
    rejected = cli("replace", "--config", str(config), "--yes")
    assert rejected.returncode == 2
    assert "key drain-timeout: not a duration" in rejected.stderr  # the key as written in the file
    config.write_text("asg: [workers]\ndrain-timeout: 10m\noutput: json\n")
    planned = cli(
        "replace", "--config", str(config), "--ami", cli.new_image(), "--dry-run", "--output", "text"
    )
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.count("replace i-") == 3  # text: the flag won over the file's json
    assert changes(ours(world)) == []


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_rerun_continues(world: SandboxClient, cli: Cli) -> None:
    before = world.group()
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("kube", "eviction"))
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130
    assert "Traceback" not in stderr
    # Where the group stands, and both ways on.
    assert "workers: rollout interrupted in phase drain" in stderr
    assert "capacity: desired 6 (was 3)" in stderr
    assert "fenced nodes (3)" in stderr
    assert f"continue: nodeswap replace --asg workers --ami {cli.new_image()} --yes" in stderr
    assert "undo:     nodeswap abort --asg workers" in stderr
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
    assert "--surge: '0' is out of range; a surge is 1 or more instances, or 1% to 100%" in result.stderr
    assert changes(ours(world)) == []


def test_a_scaling_activity_in_progress_refuses(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    world = start_sandbox(**demo_scenario(timing={"boot_seconds": 60, "shutdown_seconds": 1}))
    cli = Cli(world, tmp_path)
    world.autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=4)  # one Pending
    mutations = len(changes(ours(world)))
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 3
    assert "a scaling activity is in progress" in result.stderr
    assert len(changes(ours(world))) == mutations


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
    mutations = len(changes(ours(world)))
    result = cli("replace", "--asg", "mixed", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "mixed instances policy" in result.stderr
    assert len(changes(ours(world))) == mutations


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
    assert changes(ours(world)) == []


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
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("aws", "UpdateAutoScalingGroup", DesiredCapacity=6))
    first.kill()  # an interrupted rollout, recorded on the group
    first.communicate()
    core.create_namespaced_pod(
        "default",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="scratch"),
            spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="c", image="x")]),
        ),
    )
    result = cli(*command)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "pod default/scratch" in result.stderr
    assert "use --force to delete it anyway" in result.stderr
    assert not [r for r in ours(world) if r["operation"] == "TerminateInstanceInAutoScalingGroup"]
