"""`nodeswap replace` refuses to start while the group is scaling, end to end against the sandbox: from the
moment desired capacity changes (before Auto Scaling has started the activity, which AWS does seconds
later), while the launch activity is in progress, and it starts once the activity has ended. Nothing is
changed by a refused run."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
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


def test_the_join_reads_the_group_less_and_less_often_while_auto_scaling_has_yet_to_launch(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    """Auto Scaling starts the surge's launches seconds later (10 to 20 s on AWS): meanwhile the group is
    read again after 1 s, then 2, then 4, not every second, as its request budget is shared."""
    delay = 8.0
    world = start_sandbox(**demo_scenario(timing={"activity_seconds": delay, "boot_seconds": 1.0}))
    cli = Cli(world, tmp_path)
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    requests = ours(world)
    (surged,) = [
        r
        for r in requests
        if r["operation"] == "UpdateAutoScalingGroup" and r["target"].get("DesiredCapacity") == ["6"]
    ]
    start = datetime.fromisoformat(surged["time"])
    reads = [
        datetime.fromisoformat(r["time"]) - start
        for r in requests
        if r["operation"] == "DescribeAutoScalingGroups" and r["time"] > surged["time"]
    ]
    waiting = [read for read in reads if read.total_seconds() < delay]  # the launches not started yet
    assert 3 <= len(waiting) <= 4, reads  # as the join starts, then about 1, 3 and 7 s later (not 8 times)


def test_plan_counts_auto_scalings_reaction_as_the_groups_recent_launches_show_it(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    """The group's launches started 3 s after the changes that called for them (their activities' causes
    say when each was asked for and started): the plan's estimate counts 3 s of it in each wave."""
    world = start_sandbox(**demo_scenario(timing={"activity_seconds": 3.0, "boot_seconds": 1.0}))
    cli = Cli(world, tmp_path)
    planned = cli("plan", "--asg", "workers", "--ami", cli.new_image(), "--output", "json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    (group,) = json.loads(planned.stdout)["groups"]
    reaction = next(a for a in group["estimate"]["assumptions"] if a.startswith("Auto Scaling starts"))
    assert reaction.endswith("(median 3 s)"), reaction
