"""Auto Scaling group behaviour the sandbox adds to moto, seen through boto3 over HTTP.

Instances report the launch template version they were launched from, spread across zones, take
time to boot, honour suspended processes, and the group validates capacity the way AWS does. A capacity
change is acted on by scaling activities a moment later (see test_scaling_activities).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.sandbox_client import FROZEN_TIMING, SandboxClient

ACTIVITY = FROZEN_TIMING["activity_seconds"]
BOOT = FROZEN_TIMING["boot_seconds"]
SHUTDOWN = FROZEN_TIMING["shutdown_seconds"]


def set_desired(sb: SandboxClient, desired: int) -> None:
    sb.set_desired(desired)


def zones(sb: SandboxClient) -> Counter[str]:
    return Counter(i["AvailabilityZone"] for i in sb.group()["Instances"])


def new_image(sb: SandboxClient) -> str:
    images = sb.ec2.describe_images(Filters=[{"Name": "tag:nodeswap-sandbox:image", "Values": ["new"]}])
    image_id: str = images["Images"][0]["ImageId"]
    return image_id


def bake_version_2(sb: SandboxClient) -> dict[str, Any]:
    template = sb.group()["LaunchTemplate"]
    sb.ec2.create_launch_template_version(
        LaunchTemplateId=template["LaunchTemplateId"],
        SourceVersion="1",
        LaunchTemplateData={"ImageId": new_image(sb)},
    )
    return template


def test_instances_report_the_template_version_they_were_launched_from(sandbox: SandboxClient) -> None:
    template = bake_version_2(sandbox)
    assert sandbox.group()["LaunchTemplate"]["Version"] == "$Latest"
    old = set(sandbox.states())
    set_desired(sandbox, 6)

    by_id = {i["InstanceId"]: i for i in sandbox.group()["Instances"]}
    details = {
        i["InstanceId"]: i
        for i in sandbox.autoscaling.describe_auto_scaling_instances(InstanceIds=list(by_id))[
            "AutoScalingInstances"
        ]
    }
    for instance_id in by_id:
        expected = "1" if instance_id in old else "2"
        for seen in (by_id[instance_id]["LaunchTemplate"], details[instance_id]["LaunchTemplate"]):
            assert seen["LaunchTemplateId"] == template["LaunchTemplateId"]
            assert seen["Version"] == expected, instance_id

    reservations = sandbox.ec2.describe_instances(InstanceIds=list(by_id))["Reservations"]
    images = {i["InstanceId"]: i["ImageId"] for r in reservations for i in r["Instances"]}
    assert {images[i] for i in by_id if i not in old} == {new_image(sandbox)}
    assert new_image(sandbox) not in {images[i] for i in old}


def test_a_version_made_from_a_source_version_inherits_what_it_does_not_set(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = start_sandbox(groups=[{"instance_type": "m5.2xlarge"}])
    template = bake_version_2(sb)
    (version,) = sb.ec2.describe_launch_template_versions(
        LaunchTemplateId=template["LaunchTemplateId"], Versions=["2"]
    )["LaunchTemplateVersions"]
    assert version["LaunchTemplateData"] == {"ImageId": new_image(sb), "InstanceType": "m5.2xlarge"}
    old = set(sb.states())
    set_desired(sb, 4)
    (new,) = set(sb.states()) - old
    (reservation,) = sb.ec2.describe_instances(InstanceIds=[new])["Reservations"]
    assert reservation["Instances"][0]["InstanceType"] == "m5.2xlarge"


def test_a_numbered_version_is_kept_until_the_group_is_pointed_elsewhere(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = start_sandbox(groups=[{"launch_template_version": "1"}])
    template = bake_version_2(sb)
    set_desired(sb, 4)
    assert {i["LaunchTemplate"]["Version"] for i in sb.group()["Instances"]} == {"1"}
    sb.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="workers",
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "2"},
    )
    set_desired(sb, 5)
    assert Counter(i["LaunchTemplate"]["Version"] for i in sb.group()["Instances"]) == {"1": 4, "2": 1}


def test_instances_spread_evenly_across_zones(sandbox: SandboxClient) -> None:
    assert zones(sandbox) == {"us-east-1a": 1, "us-east-1b": 1, "us-east-1c": 1}
    set_desired(sandbox, 6)
    assert zones(sandbox) == {"us-east-1a": 2, "us-east-1b": 2, "us-east-1c": 2}
    subnets = {
        i["InstanceId"]: i["SubnetId"]
        for r in sandbox.ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    world = sandbox.admin("GET", "info")["world"]
    for instance in sandbox.group()["Instances"]:
        assert subnets[instance["InstanceId"]] == world["subnet_ids"][instance["AvailabilityZone"]]


def test_new_instances_boot_before_they_are_in_service(sandbox: SandboxClient) -> None:
    old = set(sandbox.states())
    set_desired(sandbox, 4)
    (new,) = set(sandbox.states()) - old
    assert sandbox.states()[new] == "Pending"
    assert sandbox.ec2_state(new) == "pending"
    sandbox.advance(BOOT - 1)
    assert sandbox.states()[new] == "Pending"
    sandbox.advance(1)
    assert sandbox.states()[new] == "InService"
    assert sandbox.ec2_state(new) == "running"


def test_boot_takes_real_time_when_nobody_moves_the_clock(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = start_sandbox(timing={"boot_seconds": 0.3, "shutdown_seconds": 0.1})
    old = set(sb.states())
    set_desired(sb, 4)
    (new,) = set(sb.states()) - old
    assert sb.states()[new] == "Pending"
    waiter = sb.ec2.get_waiter("instance_running")
    waiter.wait(InstanceIds=[new], WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    assert sb.states()[new] == "InService"


def test_suspended_launch_blocks_scale_out_until_resumed(sandbox: SandboxClient) -> None:
    sandbox.autoscaling.suspend_processes(AutoScalingGroupName="workers", ScalingProcesses=["Launch"])
    set_desired(sandbox, 5)
    assert len(sandbox.states()) == 3
    sandbox.autoscaling.resume_processes(AutoScalingGroupName="workers", ScalingProcesses=["Launch"])
    sandbox.advance(ACTIVITY)
    assert len(sandbox.states()) == 5


def test_suspended_terminate_blocks_scale_in_but_not_explicit_termination(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = start_sandbox(groups=[{"min_size": 1}])
    sb.autoscaling.suspend_processes(AutoScalingGroupName="workers", ScalingProcesses=["Terminate"])
    set_desired(sb, 2)
    assert set(sb.states().values()) == {"InService"}
    victim = next(iter(sb.states()))
    sb.autoscaling.terminate_instance_in_auto_scaling_group(
        InstanceId=victim, ShouldDecrementDesiredCapacity=True
    )
    assert sb.states()[victim] == "Terminating"
    sb.advance(SHUTDOWN)
    assert victim not in sb.states()
    assert sb.group()["DesiredCapacity"] == 1


def test_scale_in_follows_the_default_termination_policy(sandbox: SandboxClient) -> None:
    bake_version_2(sandbox)
    set_desired(sandbox, 6)
    sandbox.advance(BOOT)
    versions = {i["InstanceId"]: i["LaunchTemplate"]["Version"] for i in sandbox.group()["Instances"]}
    set_desired(sandbox, 3)
    leaving = {i for i, state in sandbox.states().items() if state == "Terminating"}
    assert {versions[i] for i in leaving} == {"1"}  # the older version goes first
    assert zones(sandbox) == {"us-east-1a": 2, "us-east-1b": 2, "us-east-1c": 2}  # one per zone leaving
    sandbox.advance(SHUTDOWN)
    assert zones(sandbox) == {"us-east-1a": 1, "us-east-1b": 1, "us-east-1c": 1}


def unbalance(sb: SandboxClient) -> None:
    """Take both instances out of us-east-1a, leaving zones at 0/2/2."""
    set_desired(sb, 6)
    sb.advance(BOOT)
    for instance in sb.group()["Instances"]:
        if instance["AvailabilityZone"] == "us-east-1a":
            sb.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=instance["InstanceId"], ShouldDecrementDesiredCapacity=True
            )
    sb.advance(SHUTDOWN)
    sb.advance(ACTIVITY)  # the group looks again once they are gone


def test_az_rebalance_launches_first_then_terminates(start_sandbox: Callable[..., SandboxClient]) -> None:
    sb = start_sandbox(groups=[{"min_size": 1}])
    unbalance(sb)
    states = sb.group()["Instances"]
    pending = [i for i in states if i["LifecycleState"] == "Pending"]
    assert [i["AvailabilityZone"] for i in pending] == ["us-east-1a"]
    assert len(states) == 5  # one above desired while the replacement boots
    sb.advance(BOOT)
    assert sorted(sb.states().values()).count("Terminating") == 1
    sb.advance(SHUTDOWN)
    assert sorted(zones(sb).values()) == [1, 1, 2]
    assert sb.group()["DesiredCapacity"] == 4


def test_suspended_az_rebalance_leaves_zones_unbalanced(start_sandbox: Callable[..., SandboxClient]) -> None:
    sb = start_sandbox(groups=[{"min_size": 1}])
    sb.autoscaling.suspend_processes(AutoScalingGroupName="workers", ScalingProcesses=["AZRebalance"])
    unbalance(sb)
    sb.advance(BOOT + SHUTDOWN)
    assert zones(sb) == {"us-east-1b": 2, "us-east-1c": 2}
    assert set(sb.states().values()) == {"InService"}


def test_unhealthy_instance_is_replaced(sandbox: SandboxClient) -> None:
    victim = next(iter(sandbox.states()))
    sandbox.autoscaling.set_instance_health(InstanceId=victim, HealthStatus="Unhealthy")
    assert sandbox.states()[victim] == "Terminating"
    sandbox.advance(ACTIVITY)
    assert sorted(sandbox.states().values()) == ["InService", "InService", "Pending", "Terminating"]


def test_suspended_replace_unhealthy_keeps_the_instance(sandbox: SandboxClient) -> None:
    sandbox.autoscaling.suspend_processes(
        AutoScalingGroupName="workers", ScalingProcesses=["ReplaceUnhealthy"]
    )
    victim = next(iter(sandbox.states()))
    sandbox.autoscaling.set_instance_health(InstanceId=victim, HealthStatus="Unhealthy")
    assert sandbox.states()[victim] == "InService"
    assert len(sandbox.states()) == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda a: a.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=7),
            "New SetDesiredCapacity value 7 is above max value 6 for the AutoScalingGroup.",
        ),
        (
            lambda a: a.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=2),
            "New SetDesiredCapacity value 2 is below min value 3 for the AutoScalingGroup.",
        ),
        (
            lambda a: a.update_auto_scaling_group(AutoScalingGroupName="workers", DesiredCapacity=9),
            "Desired capacity:9 must be between the specified min size:3 and max size:6",
        ),
        (
            lambda a: a.update_auto_scaling_group(AutoScalingGroupName="workers", MinSize=7),
            "Max bound, 6, must be greater than or equal to min bound, 7",
        ),
        (
            lambda a: a.put_lifecycle_hook(
                AutoScalingGroupName="workers",
                LifecycleHookName="drain",
                LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                HeartbeatTimeout=10,
            ),
            "Heartbeat timeout must be between 30 and 7200 seconds, got 10",
        ),
    ],
)
def test_invalid_capacity_is_rejected_and_changes_nothing(
    sandbox: SandboxClient, call: Callable[[Any], None], message: str
) -> None:
    before = sandbox.group()
    with pytest.raises(ClientError) as raised:
        call(sandbox.autoscaling)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["Error"]["Message"] == message
    after = sandbox.group()
    for key in ("MinSize", "MaxSize", "DesiredCapacity"):
        assert after[key] == before[key]
    assert len(after["Instances"]) == 3
    assert (
        sandbox.autoscaling.describe_lifecycle_hooks(AutoScalingGroupName="workers")["LifecycleHooks"] == []
    )


def test_decrementing_below_min_size_is_rejected(sandbox: SandboxClient) -> None:
    victim = next(iter(sandbox.states()))
    with pytest.raises(ClientError, match=r"Currently, desiredSize equals minSize \(3\)"):
        sandbox.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=victim, ShouldDecrementDesiredCapacity=True
        )
    assert sandbox.states()[victim] == "InService"


def test_raising_min_size_raises_desired_with_it(sandbox: SandboxClient) -> None:
    sandbox.autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", MinSize=4)
    assert sandbox.group()["DesiredCapacity"] == 4
    sandbox.advance(ACTIVITY)
    assert len(sandbox.states()) == 4


def test_updating_a_mixed_instances_group_keeps_its_policy(sandbox: SandboxClient) -> None:
    template = sandbox.group()["LaunchTemplate"]
    sandbox.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="mixed",
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateId": template["LaunchTemplateId"],
                    "Version": "1",
                },
                "Overrides": [{"InstanceType": "m5.large"}, {"InstanceType": "m5a.large"}],
            }
        },
        MinSize=1,
        MaxSize=4,
        DesiredCapacity=1,
        VPCZoneIdentifier=sandbox.group()["VPCZoneIdentifier"],
    )
    sandbox.autoscaling.update_auto_scaling_group(AutoScalingGroupName="mixed", MaxSize=5)
    group = sandbox.group("mixed")
    assert group["MaxSize"] == 5
    assert group["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]["Version"] == "1"
