"""Scaling activities, seen through plain boto3: Auto Scaling acts on a capacity change a moment later,
in one activity per launched or terminated instance, and DescribeScalingActivities lists them as AWS
does (in progress first, newest first, by group or ActivityIds, a page of MaxRecords at a time)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.sandbox_client import FROZEN_TIMING, SandboxClient

ACTIVITY = FROZEN_TIMING["activity_seconds"]
BOOT = FROZEN_TIMING["boot_seconds"]
SHUTDOWN = FROZEN_TIMING["shutdown_seconds"]
AT = r"At \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
ENDED = ("Successful", "Failed", "Cancelled")


def activities(sb: SandboxClient, **query: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sb.autoscaling.describe_scaling_activities(
        AutoScalingGroupName="workers", **query
    )["Activities"]
    return found


def of(sb: SandboxClient, instance_id: str) -> list[dict[str, Any]]:
    """The activities naming the instance, newest first."""
    return [a for a in activities(sb) if f"EC2 instance: {instance_id}" in a["Description"]]


def test_every_seeded_instance_was_launched_by_a_successful_activity(sandbox: SandboxClient) -> None:
    listed = activities(sandbox)
    assert sorted(a["Description"] for a in listed) == sorted(
        f"Launching a new EC2 instance: {i}" for i in sandbox.states()
    )
    for activity in listed:
        assert (activity["StatusCode"], activity["Progress"]) == ("Successful", 100)
        assert re.fullmatch(
            f"{AT} a user request created an AutoScalingGroup changing the desired capacity from 0 to 3.  "
            f"{AT} an instance was started in response to a difference between desired and actual "
            "capacity, increasing the capacity from 0 to 3.",
            activity["Cause"],
        )
        assert activity["StartTime"] < activity["EndTime"]
        assert activity["AutoScalingGroupARN"] == sandbox.group()["AutoScalingGroupARN"]


def test_an_instance_appears_only_once_its_launch_activity_starts(sandbox: SandboxClient) -> None:
    before = set(sandbox.states())
    sandbox.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="workers", MinSize=1, MaxSize=6, DesiredCapacity=4
    )
    assert sandbox.group()["DesiredCapacity"] == 4
    assert set(sandbox.states()) == before  # nothing launched yet, and no activity says so
    assert len(activities(sandbox)) == 3
    sandbox.advance(ACTIVITY - 1)
    assert set(sandbox.states()) == before
    sandbox.advance(1)
    (new,) = set(sandbox.states()) - before
    (launch, *_) = activities(sandbox)  # in progress: listed first
    assert launch["Description"] == f"Launching a new EC2 instance: {new}"
    assert (launch["StatusCode"], launch["Progress"]) == ("PreInService", 30)
    assert "EndTime" not in launch
    assert re.fullmatch(
        f"{AT} a user request update of AutoScalingGroup constraints to min: 1, max: 6, desired: 4 changing "
        f"the desired capacity from 3 to 4.  {AT} an instance was started in response to a difference "
        "between desired and actual capacity, increasing the capacity from 3 to 4.",
        launch["Cause"],
    )
    (zone,) = [i["AvailabilityZone"] for i in sandbox.group()["Instances"] if i["InstanceId"] == new]
    assert f'"Availability Zone":"{zone}"' in launch["Details"]
    sandbox.advance(BOOT)
    assert sandbox.states()[new] == "InService"
    (done,) = of(sandbox, new)
    assert (done["ActivityId"], done["StatusCode"], done["Progress"]) == (
        launch["ActivityId"],
        "Successful",
        100,
    )
    assert done["EndTime"] > done["StartTime"]


def test_scale_in_terminates_through_an_activity_naming_the_chosen_instance(sandbox: SandboxClient) -> None:
    sandbox.set_desired(4)
    sandbox.advance(BOOT)
    sandbox.autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=3)
    assert "Terminating" not in sandbox.states().values()
    sandbox.advance(ACTIVITY)
    (victim,) = [i for i, state in sandbox.states().items() if state == "Terminating"]
    (termination, _) = of(sandbox, victim)
    assert termination["Description"] == f"Terminating EC2 instance: {victim}"
    assert termination["StatusCode"] not in ENDED
    assert re.fullmatch(
        f"{AT} a user request explicitly set group desired capacity changing the desired capacity from 4 "
        f"to 3.  {AT} an instance was taken out of service in response to a difference between desired "
        f"and actual capacity, shrinking the capacity from 4 to 3.  {AT} instance {victim} was selected "
        "for termination.",
        termination["Cause"],
    )
    sandbox.advance(SHUTDOWN)
    (termination, _) = of(sandbox, victim)
    assert (termination["StatusCode"], termination["Progress"]) == ("Successful", 100)


def test_terminate_instance_in_auto_scaling_group_returns_its_activity_and_a_replacement_follows(
    sandbox: SandboxClient,
) -> None:
    before = set(sandbox.states())
    victim = next(iter(before))
    returned = sandbox.autoscaling.terminate_instance_in_auto_scaling_group(
        InstanceId=victim, ShouldDecrementDesiredCapacity=False
    )["Activity"]
    assert returned["Description"] == f"Terminating EC2 instance: {victim}"
    assert re.fullmatch(
        f"{AT} instance {victim} was taken out of service in response to a user request.", returned["Cause"]
    )
    assert of(sandbox, victim)[0]["ActivityId"] == returned["ActivityId"]
    assert len(sandbox.states()) == 3  # the replacement's activity has not started yet
    sandbox.advance(ACTIVITY)
    (new,) = set(sandbox.states()) - before
    assert re.fullmatch(
        f"{AT} an instance was started in response to a difference between desired and actual capacity, "
        "increasing the capacity from 2 to 3.",
        of(sandbox, new)[0]["Cause"],
    )


def test_with_launch_suspended_no_activity_starts_until_it_is_resumed(sandbox: SandboxClient) -> None:
    sandbox.autoscaling.suspend_processes(AutoScalingGroupName="workers", ScalingProcesses=["Launch"])
    sandbox.set_desired(4)
    sandbox.advance(60)
    assert len(sandbox.states()) == 3
    assert len(activities(sandbox)) == 3  # [SUSPEND] it "can't initiate scale-out activities"
    sandbox.autoscaling.resume_processes(AutoScalingGroupName="workers", ScalingProcesses=["Launch"])
    sandbox.advance(ACTIVITY)
    (launch, *_) = activities(sandbox)
    assert launch["StatusCode"] == "PreInService"
    assert "changing the desired capacity from 3 to 4" in launch["Cause"]  # the change it answers


def test_with_terminate_suspended_no_scale_in_activity_starts(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = start_sandbox(groups=[{"min_size": 1}])
    sb.autoscaling.suspend_processes(AutoScalingGroupName="workers", ScalingProcesses=["Terminate"])
    sb.set_desired(2)
    sb.advance(60)
    assert set(sb.states().values()) == {"InService"}
    assert all(a["Description"].startswith("Launching") for a in activities(sb))


def test_a_launch_ec2_refuses_is_a_failed_activity_and_is_tried_again(sandbox: SandboxClient) -> None:
    template = sandbox.group()["LaunchTemplate"]["LaunchTemplateId"]
    sandbox.ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"ImageId": "ami-00000000000000000"}
    )
    sandbox.set_desired(4)
    assert len(sandbox.states()) == 3
    (failed, *_) = activities(sandbox)
    reason = "The image id '[ami-00000000000000000]' does not exist. Launching EC2 instance failed."
    assert (failed["StatusCode"], failed["Progress"], failed["StatusMessage"]) == ("Failed", 100, reason)
    assert failed["Description"] == f"Launching a new EC2 instance.  Status Reason: {reason}"
    assert "EndTime" in failed
    sandbox.advance(10)  # AWS tries a failed launch again
    assert [a["StatusCode"] for a in activities(sandbox)][:2] == ["Failed", "Failed"]
    assert len(sandbox.states()) == 3


def test_a_launch_its_hook_abandons_ends_cancelled_with_the_reason(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    hook = {"name": "join", "transition": "launching", "heartbeat_timeout": 600}
    sb = start_sandbox(groups=[{"lifecycle_hooks": [hook]}])
    before = set(sb.states())
    sb.set_desired(4)
    (new,) = set(sb.states()) - before
    assert of(sb, new)[0]["StatusCode"] == "MidLifecycleAction"  # in progress until the hook completes
    sb.advance(BOOT)
    assert of(sb, new)[0]["StatusCode"] == "MidLifecycleAction"
    sb.autoscaling.complete_lifecycle_action(
        AutoScalingGroupName="workers",
        LifecycleHookName="join",
        InstanceId=new,
        LifecycleActionResult="ABANDON",
    )
    (launch,) = of(sb, new)
    assert launch["StatusCode"] == "Cancelled"
    assert re.fullmatch(
        "Instance failed to complete user's Lifecycle Action: Lifecycle Action with token [0-9a-f-]+ was "
        "abandoned: Lifecycle Action Completed with ABANDON Result",
        launch["StatusMessage"],
    )
    assert (
        launch["Description"]
        == f"Launching a new EC2 instance: {new}.  Status Reason: {launch['StatusMessage']}"
    )


def test_activities_are_filtered_by_id_and_group_and_paged(sandbox: SandboxClient) -> None:
    sandbox.set_desired(6)
    listed = activities(sandbox)
    assert len(listed) == 6
    assert [a["StatusCode"] for a in listed[:3]] == ["PreInService"] * 3  # in progress first
    wanted = [listed[4]["ActivityId"], listed[1]["ActivityId"], "no-such-activity"]
    assert [a["ActivityId"] for a in activities(sandbox, ActivityIds=wanted)] == wanted[1::-1]
    assert sandbox.autoscaling.describe_scaling_activities(AutoScalingGroupName="other")["Activities"] == []
    pages = sandbox.autoscaling.get_paginator("describe_scaling_activities").paginate(
        AutoScalingGroupName="workers", PaginationConfig={"PageSize": 4}
    )
    assert [[a["ActivityId"] for a in page["Activities"]] for page in pages] == [
        [a["ActivityId"] for a in listed[:4]],
        [a["ActivityId"] for a in listed[4:]],
    ]
    with pytest.raises(ClientError, match="MaxRecords"):
        sandbox.autoscaling.describe_scaling_activities(MaxRecords=101)
