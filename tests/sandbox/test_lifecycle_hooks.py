"""Lifecycle hooks in the sandbox behave as the Auto Scaling documentation says, seen through boto3.

Termination hooks hold an instance in Terminating:Wait until CompleteLifecycleAction or the heartbeat
timeout; heartbeats restart the timeout up to the global timeout; completing an action that is not
pending is a ValidationError; EC2 TerminateInstances bypasses hooks; launch hooks hold new instances in
Pending:Wait likewise. An instance behind a target group first drains for the target group's
deregistration delay, Terminating, with no lifecycle action pending yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.sandbox_client import FROZEN_TIMING, SandboxClient

SHUTDOWN = FROZEN_TIMING["shutdown_seconds"]
ACTIVITY = FROZEN_TIMING["activity_seconds"]
BOOT = FROZEN_TIMING["boot_seconds"]


def hook(name: str, transition: str, timeout: int = 300, result: str = "ABANDON") -> dict[str, Any]:
    return {"name": name, "transition": transition, "heartbeat_timeout": timeout, "default_result": result}


def with_hooks(
    start: Callable[..., SandboxClient], *hooks: dict[str, Any], target_group: dict[str, Any] | None = None
) -> SandboxClient:
    group = {"name": "workers", "min_size": 1, "lifecycle_hooks": list(hooks), "target_group": target_group}
    return start(groups=[group])


def terminate(sb: SandboxClient, instance_id: str, decrement: bool = True) -> None:
    sb.autoscaling.terminate_instance_in_auto_scaling_group(
        InstanceId=instance_id, ShouldDecrementDesiredCapacity=decrement
    )


def complete(sb: SandboxClient, instance_id: str, result: str = "CONTINUE", hook_name: str = "drain") -> None:
    sb.autoscaling.complete_lifecycle_action(
        LifecycleHookName=hook_name,
        AutoScalingGroupName="workers",
        LifecycleActionResult=result,
        InstanceId=instance_id,
    )


@pytest.fixture
def hooked(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    return with_hooks(start_sandbox, hook("drain", "terminating", timeout=300, result="CONTINUE"))


def test_terminating_instance_waits_until_the_action_is_completed(hooked: SandboxClient) -> None:
    victim = next(iter(hooked.states()))
    terminate(hooked, victim)
    assert hooked.states()[victim] == "Terminating:Wait"
    assert hooked.ec2_state(victim) == "running"
    assert hooked.group()["DesiredCapacity"] == 2

    hooked.advance(290)  # anything short of the heartbeat timeout leaves it waiting
    assert hooked.states()[victim] == "Terminating:Wait"

    complete(hooked, victim, "CONTINUE")
    assert hooked.states()[victim] == "Terminating:Proceed"
    hooked.advance(SHUTDOWN)
    assert victim not in hooked.states()
    assert hooked.ec2_state(victim) == "terminated"


@pytest.mark.parametrize("result", ["CONTINUE", "ABANDON"])
def test_both_results_let_a_terminating_instance_go(hooked: SandboxClient, result: str) -> None:
    victim = next(iter(hooked.states()))
    terminate(hooked, victim)
    complete(hooked, victim, result)
    hooked.advance(SHUTDOWN)
    assert hooked.ec2_state(victim) == "terminated"


def test_completing_by_token_works(hooked: SandboxClient) -> None:
    victim = next(iter(hooked.states()))
    terminate(hooked, victim)
    # AWS hands the token out in the hook's notification; the sandbox keeps it on the instance record.
    token = hooked.sandbox.rules.tracked[victim].actions["drain"].token
    hooked.autoscaling.complete_lifecycle_action(
        LifecycleHookName="drain",
        AutoScalingGroupName="workers",
        LifecycleActionResult="CONTINUE",
        LifecycleActionToken=token,
    )
    assert hooked.states()[victim] == "Terminating:Proceed"


def test_heartbeat_timeout_applies_the_default_result(start_sandbox: Callable[..., SandboxClient]) -> None:
    sb = with_hooks(start_sandbox, hook("drain", "terminating", timeout=60, result="ABANDON"))
    victim = next(iter(sb.states()))
    terminate(sb, victim)
    sb.advance(60)
    assert sb.states()[victim] == "Terminating:Proceed"
    sb.advance(SHUTDOWN)
    assert sb.ec2_state(victim) == "terminated"


def test_heartbeat_restarts_the_timeout(hooked: SandboxClient) -> None:
    victim = next(iter(hooked.states()))
    terminate(hooked, victim)
    hooked.advance(200)
    hooked.autoscaling.record_lifecycle_action_heartbeat(
        LifecycleHookName="drain", AutoScalingGroupName="workers", InstanceId=victim
    )
    hooked.advance(200)  # 400 s after the termination, 200 s after the heartbeat
    assert hooked.states()[victim] == "Terminating:Wait"
    hooked.advance(100)  # a full timeout after the heartbeat
    assert hooked.states()[victim] == "Terminating:Proceed"


def test_heartbeats_cannot_pass_the_global_timeout(start_sandbox: Callable[..., SandboxClient]) -> None:
    sb = with_hooks(start_sandbox, hook("drain", "terminating", timeout=30))
    victim = next(iter(sb.states()))
    terminate(sb, victim)
    # The global timeout is min(48 h, 100 x heartbeat) = 3000 s here: heartbeats every 25 s keep
    # the instance waiting until then, and not a moment longer.
    waited = 0
    while sb.states()[victim] == "Terminating:Wait" and waited < 4000:
        sb.autoscaling.record_lifecycle_action_heartbeat(
            LifecycleHookName="drain", AutoScalingGroupName="workers", InstanceId=victim
        )
        sb.advance(25)
        waited += 25
    assert sb.states()[victim] == "Terminating:Proceed"
    assert waited == 3000


def test_completing_an_action_that_is_not_pending_is_a_validation_error(hooked: SandboxClient) -> None:
    victim = next(iter(hooked.states()))
    with pytest.raises(ClientError) as before:
        complete(hooked, victim)
    terminate(hooked, victim)
    complete(hooked, victim)
    with pytest.raises(ClientError) as twice:
        complete(hooked, victim)
    for raised in (before, twice):
        error = raised.value.response["Error"]
        assert error["Code"] == "ValidationError"
        assert error["Message"] == f"No active Lifecycle Action found with instance ID {victim}"
    with pytest.raises(ClientError, match="No active Lifecycle Action found with instance ID"):
        hooked.autoscaling.record_lifecycle_action_heartbeat(
            LifecycleHookName="drain", AutoScalingGroupName="workers", InstanceId=victim
        )


def test_ec2_terminate_instances_bypasses_hooks_and_the_group_replaces_it(hooked: SandboxClient) -> None:
    victim = next(iter(hooked.states()))
    hooked.ec2.terminate_instances(InstanceIds=[victim])
    assert hooked.ec2_state(victim) == "terminated"
    assert victim not in hooked.states()
    hooked.advance(ACTIVITY)
    assert sorted(hooked.states().values()) == ["InService", "InService", "Pending"]  # a replacement launches
    assert hooked.group()["DesiredCapacity"] == 3


def test_abandon_stops_the_remaining_hooks_and_continue_waits_for_them(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = with_hooks(start_sandbox, hook("drain", "terminating"), hook("backup", "terminating"))
    first, second = list(sb.states())[:2]
    terminate(sb, first)
    terminate(sb, second)
    complete(sb, first, "CONTINUE", hook_name="drain")
    assert sb.states()[first] == "Terminating:Wait"  # "backup" is still pending
    complete(sb, first, "CONTINUE", hook_name="backup")
    assert sb.states()[first] == "Terminating:Proceed"
    complete(sb, second, "ABANDON", hook_name="drain")
    assert sb.states()[second] == "Terminating:Proceed"


def test_deleting_a_hook_completes_its_outstanding_actions(hooked: SandboxClient) -> None:
    victim = next(iter(hooked.states()))
    terminate(hooked, victim)
    hooked.autoscaling.delete_lifecycle_hook(LifecycleHookName="drain", AutoScalingGroupName="workers")
    assert hooked.states()[victim] == "Terminating:Proceed"


def test_launching_instance_waits_in_pending_wait(start_sandbox: Callable[..., SandboxClient]) -> None:
    sb = with_hooks(start_sandbox, hook("join", "launching", timeout=600))
    before = set(sb.states())
    sb.set_desired(4)
    (new,) = set(sb.states()) - before
    assert sb.states()[new] == "Pending:Wait"
    sb.advance(BOOT)
    assert sb.states()[new] == "Pending:Wait"  # booted, but the action is pending
    assert sb.ec2_state(new) == "running"
    complete(sb, new, "CONTINUE", hook_name="join")
    assert sb.states()[new] == "InService"


def test_abandoned_launch_is_terminated_and_replaced(start_sandbox: Callable[..., SandboxClient]) -> None:
    sb = with_hooks(start_sandbox, hook("join", "launching", timeout=600))
    before = set(sb.states())
    sb.set_desired(4)
    (new,) = set(sb.states()) - before
    complete(sb, new, "ABANDON", hook_name="join")
    sb.advance(SHUTDOWN)
    assert sb.ec2_state(new) == "terminated"
    states = sb.states()
    assert new not in states
    assert len(states) == 4  # a replacement took its place
    assert sb.group()["DesiredCapacity"] == 4


def test_launch_hook_timeout_applies_its_default_result(start_sandbox: Callable[..., SandboxClient]) -> None:
    sb = with_hooks(start_sandbox, hook("join", "launching", timeout=120, result="CONTINUE"))
    before = set(sb.states())
    sb.set_desired(4)
    (new,) = set(sb.states()) - before
    sb.advance(120)
    assert sb.states()[new] == "InService"


def test_terminating_an_instance_in_pending_wait_ends_its_launch_action(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = with_hooks(
        start_sandbox,
        hook("join", "launching", timeout=120, result="CONTINUE"),
        hook("drain", "terminating", result="CONTINUE"),
    )
    before = set(sb.states())
    sb.set_desired(4)
    (new,) = set(sb.states()) - before
    assert sb.states()[new] == "Pending:Wait"
    terminate(sb, new)
    assert sb.states()[new] == "Terminating:Wait"
    complete(sb, new, "CONTINUE")  # the termination hook: nothing else holds the instance
    assert sb.states()[new] == "Terminating:Proceed"
    with pytest.raises(ClientError, match=f"No active Lifecycle Action found with instance ID {new}"):
        complete(sb, new, "CONTINUE", hook_name="join")
    sb.advance(120)  # the launch hook's timeout, had its action survived, would have made it InService
    assert new not in sb.states()
    assert sb.ec2_state(new) == "terminated"


# ----- target group draining before the termination hooks -------------------------------------------

DRAIN_HOOK = hook("drain", "terminating", timeout=300, result="CONTINUE")


def behind_target_group(
    start: Callable[..., SandboxClient], delay: int, *hooks: dict[str, Any]
) -> SandboxClient:
    return with_hooks(start, *hooks, target_group={"name": "web", "deregistration_delay": delay})


def set_delay(sb: SandboxClient, value: str) -> None:
    sb.client("elbv2").modify_target_group_attributes(
        TargetGroupArn=sb.group()["TargetGroupARNs"][0],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": value}],
    )


def target_state(sb: SandboxClient, instance_id: str) -> str:
    health = sb.client("elbv2").describe_target_health(
        TargetGroupArn=sb.group()["TargetGroupARNs"][0], Targets=[{"Id": instance_id}]
    )
    state: str = health["TargetHealthDescriptions"][0]["TargetHealth"]["State"]
    return state


def test_a_target_group_drains_the_instance_before_its_termination_hooks(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = behind_target_group(start_sandbox, 300, DRAIN_HOOK)
    victim = next(iter(sb.states()))
    assert target_state(sb, victim) == "healthy"
    terminate(sb, victim)
    assert sb.states()[victim] == "Terminating"
    assert target_state(sb, victim) == "draining"
    assert sb.ec2_state(victim) == "running"
    with pytest.raises(ClientError) as early:
        complete(sb, victim)
    error = early.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert error["Message"] == f"No active Lifecycle Action found with instance ID {victim}"

    sb.advance(299)
    assert sb.states()[victim] == "Terminating"
    sb.advance(1)  # the deregistration delay has passed: now the hook's action is pending
    assert sb.states()[victim] == "Terminating:Wait"
    assert target_state(sb, victim) == "unused"
    sb.advance(290)  # the heartbeat timeout runs from Terminating:Wait, not from the termination
    assert sb.states()[victim] == "Terminating:Wait"
    complete(sb, victim)
    assert sb.states()[victim] == "Terminating:Proceed"


def test_a_deregistration_delay_of_zero_goes_to_terminating_wait_at_once(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = behind_target_group(start_sandbox, 0, DRAIN_HOOK)
    victim = next(iter(sb.states()))
    terminate(sb, victim)
    assert sb.states()[victim] == "Terminating:Wait"
    complete(sb, victim)
    assert sb.states()[victim] == "Terminating:Proceed"


def test_the_delay_set_through_the_api_is_honoured(start_sandbox: Callable[..., SandboxClient]) -> None:
    sb = behind_target_group(start_sandbox, 0, DRAIN_HOOK)
    set_delay(sb, "45")
    victim = next(iter(sb.states()))
    terminate(sb, victim)
    sb.advance(40)
    assert sb.states()[victim] == "Terminating"
    sb.advance(5)
    assert sb.states()[victim] == "Terminating:Wait"


def test_without_hooks_the_instance_shuts_down_once_drained(
    start_sandbox: Callable[..., SandboxClient],
) -> None:
    sb = behind_target_group(start_sandbox, 60)
    victim = next(iter(sb.states()))
    terminate(sb, victim)
    assert sb.states()[victim] == "Terminating"
    sb.advance(59)
    assert sb.ec2_state(victim) == "running"
    sb.advance(1)
    assert sb.ec2_state(victim) == "shutting-down"


@pytest.mark.parametrize(("value", "accepted"), [("0", True), ("3600", True), ("3601", False), ("-1", False)])
def test_the_deregistration_delay_takes_0_to_3600_seconds(
    start_sandbox: Callable[..., SandboxClient], value: str, accepted: bool
) -> None:
    sb = behind_target_group(start_sandbox, 300)
    if accepted:
        set_delay(sb, value)
    else:
        with pytest.raises(ClientError, match="must be between '0-3600' inclusive"):
            set_delay(sb, value)
    arn = sb.group()["TargetGroupARNs"][0]
    attributes = sb.client("elbv2").describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
    delay = {a["Key"]: a["Value"] for a in attributes}["deregistration_delay.timeout_seconds"]
    assert delay == (value if accepted else "300")
