"""`nodeswap replace` refuses to start while the group is scaling, end to end against the sandbox: from the
moment desired capacity changes (before Auto Scaling has started the activity, which AWS does seconds
later), while the launch activity is in progress, and it starts once the activity has ended. Nothing is
changed by a refused run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import Cli, changes, demo_scenario, ours
from tests.sandbox_client import SandboxClient

ACTIVITY, BOOT = 30.0, 30.0


@pytest.fixture
def world(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    """The demo world, its clock frozen: a scaling activity starts, and a launch ends, when a test says."""
    timing = {"activity_seconds": ACTIVITY, "boot_seconds": BOOT, "shutdown_seconds": 0.5}
    return start_sandbox(**demo_scenario(timing=timing))


def refused(world: SandboxClient, cli: Cli) -> None:
    mutations = len(changes(ours(world)))
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "a scaling activity is in progress" in result.stderr
    assert "wait for it to finish and re-run" in result.stderr
    assert len(changes(ours(world))) == mutations


def test_replace_refuses_while_a_capacity_change_is_being_acted_on(
    world: SandboxClient, tmp_path: Path
) -> None:
    cli = Cli(world, tmp_path)
    world.autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=4)
    # Auto Scaling has not started the launch yet: no activity, no new instance, only desired capacity.
    assert len(world.group()["Instances"]) == 3
    before = world.autoscaling.describe_scaling_activities(AutoScalingGroupName="workers")["Activities"]
    assert all(a["StatusCode"] == "Successful" for a in before)
    refused(world, cli)

    world.advance(ACTIVITY)
    (launch, *_) = world.autoscaling.describe_scaling_activities(AutoScalingGroupName="workers")["Activities"]
    assert launch["StatusCode"] == "PreInService"
    refused(world, cli)

    world.advance(BOOT)  # the launch ends: the group is at rest, and the rollout goes ahead
    world.sandbox.scheduler.settle(10)  # once the instance's node has joined
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
