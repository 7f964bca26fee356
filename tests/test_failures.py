"""When a rollout goes wrong, end to end against the sandbox: a bad image is rolled back automatically
(and a canary limits it), a drain past its timeout rolls its wave back, `abort` undoes a run killed at
any phase, a re-run with other options is refused, `status` says where a group stands, a lost lock
stops the run, another tool's termination hook is left to it, and the larger rehearsal finishes under
injected faults. Each ends with the whole state checked: instances, launch template, capacity,
suspended processes, taints and cordons, the record, the lock, workloads at strength, 0 PDB violations
and 0 lost pods."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from nodeswap.sandbox.kube import apiserver
from nodeswap.sandbox.scenario import load_scenario
from tests.e2e import (
    DEMO,
    Cli,
    assert_converged,
    assert_no_trace,
    changes,
    demo_scenario,
    ours,
    replaced_in,
    request,
    start_until,
)
from tests.sandbox_client import SandboxClient

ROLLED_BACK, INTERRUPTED = 4, 5


def launched_version(world: SandboxClient) -> str:
    """The launch template version the group launches, resolved as Auto Scaling resolves it."""
    spec = world.group()["LaunchTemplate"]
    version = spec["Version"]
    if version.startswith("$"):
        described = world.ec2.describe_launch_templates(LaunchTemplateIds=[spec["LaunchTemplateId"]])
        key = "LatestVersionNumber" if version == "$Latest" else "DefaultVersionNumber"
        version = str(described["LaunchTemplates"][0][key])
    return str(version)


def assert_undone(world: SandboxClient, before: dict[str, Any], retired: list[str], said: str) -> None:
    """Undone as far as it can be: the group at its capacity and launching the old image again, every old
    instance not retired serving again (what was retired is said, not hidden), no trace of nodeswap."""
    world.sandbox.scheduler.settle(5)
    group = world.group()
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (3, 6, 3)
    assert group["SuspendedProcesses"] == before["SuspendedProcesses"]
    assert launched_version(world) == "1"
    serving = {i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"}
    assert len(serving) == 3
    assert {i["InstanceId"] for i in before["Instances"]} - set(retired) <= serving
    assert ("cannot be brought back" in said) == bool(retired)
    assert_no_trace(world)
    apps = client.AppsV1Api(world.kube())
    for deployment in apps.list_namespaced_deployment("default").items:
        assert deployment.status.ready_replicas == deployment.spec.replicas
    report = world.admin("GET", "report")
    assert report["pdb_violations"] == []
    assert report["lost_pods"] == []


def assert_as_before(world: SandboxClient, before: dict[str, Any]) -> None:
    """Undone: the same instances serving on the old image, the group and the cluster as they were."""
    serving = {i["InstanceId"] for i in world.group()["Instances"] if i["LifecycleState"] == "InService"}
    assert serving == {i["InstanceId"] for i in before["Instances"]}
    assert launched_version(world) == "1"  # launches the old image again
    assert_converged(world, before, "1")


@pytest.mark.parametrize("failure", ["never_join", "never_ready"])
def test_a_bad_image_is_rolled_back_and_the_group_is_as_before(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path, failure: str
) -> None:
    world = start_sandbox(**demo_scenario(kubernetes={**demo_scenario()["kubernetes"], failure: ["new"]}))
    cli = Cli(world, tmp_path)
    before = world.group()
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--join-timeout", "6s")
    assert result.returncode == ROLLED_BACK, result.stdout + result.stderr
    assert "did not become Ready nodes" in result.stderr
    assert ("no node registered" if failure == "never_join" else "NotReady") in result.stderr
    assert "rolled back" in result.stderr
    assert "pinned to the version it launched before" in result.stdout  # the group asked for $Latest
    assert not [r for r in ours(world) if r["subresource"] == "eviction"]  # no pod was moved
    assert_as_before(world, before)


def test_on_failure_keep_leaves_the_wave_for_inspection_then_abort_undoes_it(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    world = start_sandbox(
        **demo_scenario(kubernetes={**demo_scenario()["kubernetes"], "never_join": ["new"]})
    )
    cli = Cli(world, tmp_path)
    before = world.group()
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--join-timeout", "5s"]
    result = cli(*command, "--on-failure", "keep")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "kept as it is for inspection" in result.stderr
    assert "nodeswap abort --asg workers" in result.stderr
    assert world.group()["DesiredCapacity"] == 6  # left surged, as asked
    status = cli("status", "--asg", "workers", "--output", "json")
    (group,) = json.loads(status.stdout)["groups"]
    assert (group["state"], group["phase"]) == ("interrupted", "failed")
    assert "did not become Ready nodes" in group["failure"]
    assert len(group["launched"]) == 3
    undone = cli("abort", "--asg", "workers", "--yes")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert_as_before(world, before)


def test_a_canary_limits_a_bad_image_to_its_wave(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    world = start_sandbox(
        **demo_scenario(kubernetes={**demo_scenario()["kubernetes"], "never_join": ["new"]})
    )
    cli = Cli(world, tmp_path)
    before = world.group()
    result = cli(
        "replace",
        "--asg",
        "workers",
        "--ami",
        cli.new_image(),
        "--yes",
        "--canary",
        "1",
        "--join-timeout",
        "5s",
    )
    assert result.returncode == ROLLED_BACK, result.stdout + result.stderr
    raised = [
        int(r["target"]["DesiredCapacity"][0])
        for r in ours(world)
        if r["operation"] == "UpdateAutoScalingGroup" and "DesiredCapacity" in r["target"]
    ]
    assert raised == [4]  # one instance launched, not three
    assert_as_before(world, before)


def test_a_canary_of_a_good_image_goes_on_to_the_rest(world: SandboxClient, cli: Cli) -> None:
    before = world.group()
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--canary", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "canary nodes healthy" in result.stdout
    assert_converged(world, before, "2")


def test_a_drain_past_its_timeout_rolls_its_wave_back(world: SandboxClient, cli: Cli) -> None:
    """The budgets stop allowing disruptions once the new nodes are launched: nothing can move, the
    drain times out, and the wave is undone: old nodes serving again, new instances gone."""
    before = world.group()
    policy = client.PolicyV1Api(world.kube())
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--drain-timeout", "4s"]
    run = start_until(world, cli, command, request("aws", "UpdateAutoScalingGroup", DesiredCapacity=6))
    policy.patch_namespaced_pod_disruption_budget("web", "default", {"spec": {"maxUnavailable": 0}})
    policy.patch_namespaced_pod_disruption_budget("db", "default", {"spec": {"minAvailable": 2}})
    stdout, stderr = run.communicate(timeout=180)
    assert run.returncode == ROLLED_BACK, stdout + stderr
    assert "the drain did not finish within 0:00:04" in stderr
    assert "waiting on PDB default/web" in stderr
    assert "un-fenced 3 old nodes" in stdout
    assert_as_before(world, before)


def test_a_rollback_that_cannot_move_pods_back_says_so_and_abort_finishes_it(
    world: SandboxClient, cli: Cli
) -> None:
    """The drain passes its timeout with pods already moved to the new nodes, and a pod no one may
    evict has landed there too: the rollback cannot empty the new nodes; it says so, leaves them
    serving, and `abort` finishes once that pod is dealt with."""
    before = world.group()
    core = client.CoreV1Api(world.kube())
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--drain-timeout", "3s"]
    run = start_until(world, cli, command, request("kube", "eviction"))
    old = {i["InstanceId"] for i in before["Instances"]}
    new = [n for n in core.list_node().items if n.spec.provider_id.rsplit("/", 1)[1] not in old]
    for number, node in enumerate(new):  # on every new node: whichever the rollback picks holds one
        bare = client.V1Pod(
            metadata=client.V1ObjectMeta(name=f"scratch-{number}"),
            spec=client.V1PodSpec(
                node_name=node.metadata.name, containers=[client.V1Container(name="c", image="x")]
            ),
        )
        core.create_namespaced_pod("default", bare)
    stdout, stderr = run.communicate(timeout=180)
    assert run.returncode == 1, stdout + stderr
    assert "the drain did not finish within 0:00:03" in stdout  # the wave's failure, then the rollback
    assert "the rollback could not move the pods off the new nodes" in stderr
    assert re.search(r"default/scratch-\d: declares no controller", stderr)
    assert "nodeswap abort --asg workers" in stderr
    status = cli("status", "--asg", "workers", "--output", "json")
    (group,) = json.loads(status.stdout)["groups"]
    assert (group["state"], group["phase"], group["fenced_nodes"]) == ("interrupted", "rollback", [])
    for number in range(len(new)):
        core.delete_namespaced_pod(f"scratch-{number}", "default", grace_period_seconds=0)
    undone = cli("abort", "--asg", "workers", "--yes")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert_undone(world, before, group["retired"], undone.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point",
    [
        request("aws", "CreateLaunchTemplateVersion"),  # baked, before the surge
        request("aws", "UpdateAutoScalingGroup", DesiredCapacity=6),  # new instances joining
        request("kube", "patch:nodes"),  # fencing
        request("kube", "eviction"),  # draining
        request("aws", "CompleteLifecycleAction"),  # an old instance already retired
    ],
    ids=["bake", "join", "fence", "drain", "retired"],
)
def test_abort_after_a_kill_at_any_phase_leaves_a_consistent_group(
    world: SandboxClient, cli: Cli, point: Callable[[dict[str, Any]], bool]
) -> None:
    before = world.group()
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, point)
    first.kill()
    first.communicate()
    status = cli("status", "--asg", "workers", "--output", "json")
    assert status.returncode == INTERRUPTED, status.stdout + status.stderr
    (group,) = json.loads(status.stdout)["groups"]
    assert group["state"] == "interrupted"
    assert group["abort_command"] == "nodeswap abort --asg workers"
    retired = list(group["retired"])

    result = cli("abort", "--asg", "workers", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "its process is gone" in result.stdout  # the killed run's lock, taken over at once
    assert_undone(world, before, retired, result.stdout)
    assert cli("status", "--asg", "workers").returncode == 0


def test_a_node_cordoned_before_the_rollout_stays_cordoned_after_abort(
    world: SandboxClient, cli: Cli
) -> None:
    core = client.CoreV1Api(world.kube())
    cordoned = core.list_node().items[0].metadata.name  # by an operator, before nodeswap ran
    core.patch_node(cordoned, {"spec": {"unschedulable": True}})
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("kube", "eviction"))
    first.kill()
    first.communicate()
    result = cli("abort", "--asg", "workers", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    serving = {i["InstanceId"] for i in world.group()["Instances"] if i["LifecycleState"] == "InService"}
    for node in core.list_node().items:
        if node.spec.provider_id.rsplit("/", 1)[1] not in serving:
            continue
        assert not [t for t in node.spec.taints or [] if t.key.startswith("nodeswap.io/")]
        assert "nodeswap.io/cordoned-before" not in (node.metadata.annotations or {})
        assert bool(node.spec.unschedulable) == (node.metadata.name == cordoned), node.metadata.name


def test_a_rerun_with_other_options_is_refused_and_changes_nothing(world: SandboxClient, cli: Cli) -> None:
    before = world.group()
    first = start_until(
        world,
        cli,
        ["replace", "--asg", "workers", "--all", "--yes"],
        request("aws", "UpdateAutoScalingGroup", DesiredCapacity=6),
    )
    first.kill()
    first.communicate()
    mutations = len(changes(ours(world)))
    planned = cli("plan", "--asg", "workers", "--all", "--output", "json")
    (group,) = json.loads(planned.stdout)["groups"]
    assert group["interrupted_rollout"]["continue_command"] == "nodeswap replace --asg workers --all --yes"
    assert planned.returncode == 0, planned.stdout + planned.stderr  # the same options: it may go on
    for other in (["--yes"], ["--older-than", "7d", "--yes"], ["--all", "--surge", "1", "--yes"]):
        result = cli("replace", "--asg", "workers", *other)
        assert result.returncode == 3, result.stdout + result.stderr
        assert "was asked for --all" in result.stderr
        assert "continue it: nodeswap replace --asg workers --all --yes" in result.stderr
        assert "or undo it: nodeswap abort --asg workers" in result.stderr
    assert len(changes(ours(world))) == mutations
    resumed = cli("replace", "--asg", "workers", "--all", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_converged(world, before, "1")


def test_status_of_an_idle_group_and_abort_with_nothing_to_undo(world: SandboxClient, cli: Cli) -> None:
    status = cli("status", "--asg", "workers", "--output", "json")
    assert status.returncode == 0, status.stderr
    (group,) = json.loads(status.stdout)["groups"]
    assert group["state"] == "idle"
    assert group["capacity"] == {"min": 3, "max": 6, "desired": 3}
    result = cli("abort", "--asg", "workers", "--yes")
    assert result.returncode == 0, result.stderr
    assert "nothing to undo" in result.stdout
    assert changes(ours(world)) == []


def test_a_record_survives_the_loss_of_either_copy(world: SandboxClient, cli: Cli) -> None:
    """An authoritative `terraform apply` drops the group's tags mid-run: the ConfigMap's copy resumes
    the rollout (and writes the tags again)."""
    before = world.group()
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("kube", "eviction"))
    first.kill()
    first.communicate()
    tags = [t for t in world.group()["Tags"] if t["Key"].startswith("nodeswap.io/")]
    assert tags  # the record was on the group
    world.autoscaling.delete_tags(
        Tags=[{"ResourceId": "workers", "ResourceType": "auto-scaling-group", "Key": t["Key"]} for t in tags]
    )
    second = cli(*command)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "continuing the rollout recorded on the group" in second.stdout
    assert_converged(world, before, "2")


def test_abort_works_from_the_tags_alone(world: SandboxClient, cli: Cli) -> None:
    before = world.group()
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("kube", "patch:nodes"))
    first.kill()
    first.communicate()
    client.CoreV1Api(world.kube()).delete_namespaced_config_map("nodeswap-rollout-workers", "kube-system")
    result = cli("abort", "--asg", "workers", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    world.sandbox.scheduler.settle(5)
    assert_as_before(world, before)


def test_losing_the_lock_stops_the_run_and_a_rerun_finishes(world: SandboxClient, cli: Cli) -> None:
    """Every renewal of the lock is cut off mid-run: the run stops before its next step (it cannot vouch
    for its lock), leaves its record, and the same command finishes once the API answers again."""
    before = world.group()
    command = [
        "replace", "--asg", "workers", "--ami", cli.new_image(), "--yes",
        "--surge", "1", "--max-unavailable", "1", "--lock-duration", "3s",
    ]  # fmt: skip
    run = start_until(world, cli, command, request("kube", "eviction"))
    world.admin(
        "PUT", "faults", [{"api": "kube", "operations": ["update:leases"], "error": "drop", "rate": 1}]
    )
    stdout, stderr = run.communicate(timeout=180)
    assert run.returncode == 1, stdout + stderr
    assert "lost the lock of group workers" in stderr
    world.admin("PUT", "faults", [])
    assert cli("status", "--asg", "workers").returncode == INTERRUPTED
    second = cli(*command)
    assert second.returncode == 0, second.stdout + second.stderr
    assert_converged(world, before, "2")


def test_another_tools_termination_hook_is_left_to_its_owner(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    scenario = demo_scenario()
    other = {"name": "log-shipper", "transition": "terminating", "heartbeat_timeout": 300}
    scenario["groups"][0]["lifecycle_hooks"].append({**other, "default_result": "CONTINUE"})
    world = start_sandbox(**scenario)
    cli = Cli(world, tmp_path)
    before = world.group()
    stop = threading.Event()
    completed: list[str] = []

    def log_shipper() -> None:  # the other tool: ships the logs of each leaving instance, then lets it go
        autoscaling = world.client("autoscaling")
        while not stop.wait(0.3):
            for instance in world.group()["Instances"]:
                if (
                    instance["LifecycleState"] == "Terminating:Wait"
                    and instance["InstanceId"] not in completed
                ):
                    autoscaling.complete_lifecycle_action(
                        AutoScalingGroupName="workers",
                        LifecycleHookName="log-shipper",
                        InstanceId=instance["InstanceId"],
                        LifecycleActionResult="CONTINUE",
                    )
                    completed.append(instance["InstanceId"])

    shipper = threading.Thread(target=log_shipper)
    shipper.start()
    try:
        result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    finally:
        stop.set()
        shipper.join()
    assert result.returncode == 0, result.stdout + result.stderr
    hooks = {
        r["target"]["LifecycleHookName"][0]
        for r in ours(world)
        if r["operation"] == "CompleteLifecycleAction"
    }
    assert hooks == {"nodeswap-drain"}  # never the log shipper's
    assert sorted(completed) == sorted(i["InstanceId"] for i in before["Instances"])
    assert_converged(world, before, "2")


def test_another_tools_hook_that_outlasts_the_drain_timeout_is_named_and_the_rollout_finishes(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    """A hook nodeswap does not own and nobody completes holds the old instances until its heartbeat
    timeout: nodeswap waits at most --drain-timeout for them, says which wait on what, and finishes."""
    scenario = demo_scenario()
    other = {"name": "log-shipper", "transition": "terminating", "heartbeat_timeout": 60}
    scenario["groups"][0]["lifecycle_hooks"].append({**other, "default_result": "CONTINUE"})
    world = start_sandbox(**scenario)
    cli = Cli(world, tmp_path)
    before = world.group()
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--drain-timeout", "20s")
    assert result.returncode == 0, result.stdout + result.stderr
    old = sorted(i["InstanceId"] for i in before["Instances"])
    waiting = f"{', '.join(old)} still wait on log-shipper (another tool's hook); each ends at its heartbeat"
    assert waiting in result.stdout
    assert [world.states().get(i) for i in old] == ["Terminating:Wait"] * len(old)


def test_hooks_pending_only_after_a_deregistration_delay_are_still_completed(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    """Behind a target group, a terminated instance drains its connections before its hook is pending:
    nodeswap keeps looking until it is, and completes it."""
    scenario = demo_scenario()
    scenario["groups"][0]["target_group"] = {"name": "web", "deregistration_delay": 4}
    world, before, _ = replaced_in(start_sandbox, tmp_path, scenario)
    completed = [
        r["target"]["InstanceId"][0]
        for r in ours(world)
        if r["operation"] == "CompleteLifecycleAction" and r["status"] == 200
    ]
    assert sorted(completed) == sorted(i["InstanceId"] for i in before["Instances"])
    # None waits on its hook any more (each is past it, shutting down or gone).
    assert not [i for i in world.group()["Instances"] if i["LifecycleState"] == "Terminating:Wait"]
    assert_converged(world, before, "2")


def test_the_rollout_ends_once_its_hooks_are_completed_not_when_the_old_instances_have_shut_down(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    """An old instance past nodeswap's hook is Auto Scaling's to finish: with a 60 s shutdown, the rollout
    ends while the old instances are still Terminating:Proceed, each hook completed."""
    scenario = demo_scenario()
    scenario["timing"]["shutdown_seconds"] = 60
    world, before, _ = replaced_in(start_sandbox, tmp_path, scenario)
    old = sorted(i["InstanceId"] for i in before["Instances"])
    states = world.states()
    assert [states.get(i) for i in old] == ["Terminating:Proceed"] * len(old)
    completed = [
        r["target"]["InstanceId"][0]
        for r in ours(world)
        if r["operation"] == "CompleteLifecycleAction" and r["status"] == 200
    ]
    assert sorted(completed) == old
    assert_converged(world, before, "2")


@pytest.mark.slow
def test_the_larger_rehearsal_completes_under_injected_faults(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apiserver, "MAX_WATCH_SECONDS", 3)  # every watch is cut after a few seconds
    large = load_scenario(DEMO.parents[2] / "configs" / "rehearsal-large.yaml").model_dump(mode="json")
    rate = 0.1
    large["faults"] = [  # each at 10%
        {"api": "kube", "operations": ["*"], "error": "internal", "rate": rate},
        {"api": "kube", "operations": ["*"], "error": "unavailable", "rate": rate},
        {"api": "kube", "operations": ["*"], "error": "throttle", "rate": rate},
        {"api": "kube", "operations": ["*"], "error": "drop", "rate": rate},
        {"api": "aws", "operations": ["*"], "error": "throttle", "rate": rate},
    ]
    faults, large["faults"] = large["faults"], []
    world = start_sandbox(**large)
    cli = Cli(world, tmp_path)
    before = world.group()
    world.admin("PUT", "faults", faults)
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", timeout=600)
    world.admin("PUT", "faults", [])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "replaced 12 nodes" in result.stdout
    assert "waiting on PDB Too many requests" not in result.stdout
    # nodeswap asks little (one list per kind, no eviction a budget would refuse), so at 10% a run meets
    # a few dozen faults: enough that both APIs failed it more than once.
    faulted = [r for r in world.admin("GET", "report")["requests"] if r.get("fault")]
    assert len(faulted) >= 10
    assert {r["api"] for r in faulted} == {"aws", "kube"}
    assert_converged(world, before, "2")
