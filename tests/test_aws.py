"""The AWS adapter's request budget, over HTTP against the sandbox: what never changes is described once
per run (an instance's launch time and image, a launch template version), only what is new is described
again, and the number $Latest names is looked up again once the group shows it may have moved."""

from __future__ import annotations

from typing import Any

import pytest

from nodeswap.aws import Aws, _median_reaction
from tests.e2e import ours
from tests.sandbox_client import FROZEN_TIMING, SandboxClient


@pytest.fixture
def aws(sandbox: SandboxClient, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """nodeswap's adapter, pointed at ``sandbox`` (group `workers`: 3 instances, launch template $Latest)."""
    for name, value in sandbox.sandbox.environment().items():
        monkeypatch.setenv(name, value)
    return Aws(region=sandbox.sandbox.scenario.region)


def asked(world: SandboxClient, operation: str) -> list[dict[str, list[str]]]:
    """The targets of nodeswap's requests to ``operation``, in order."""
    targets: list[dict[str, list[str]]] = [r["target"] for r in ours(world) if r["operation"] == operation]
    return targets


def ids(target: dict[str, Any]) -> set[str]:
    return {v for k, values in target.items() if k.startswith("InstanceId") for v in values}


def test_instances_and_template_versions_are_described_once(sandbox: SandboxClient, aws: Aws) -> None:
    first = aws.with_details(aws.groups(["workers"])[0])
    again = aws.with_details(aws.groups(["workers"])[0])
    assert again == first
    assert all(i.launched_at and i.image_id for i in first.instances)
    assert first.instance_types == ("m5.large",)
    assert aws.image_of(first.launch) == sandbox.admin("GET", "info")["world"]["images"]["old"]
    assert len(asked(sandbox, "DescribeAutoScalingGroups")) == 2  # the group itself is read each time
    assert len(asked(sandbox, "DescribeInstances")) == 1
    assert len(asked(sandbox, "DescribeLaunchTemplateVersions")) == 1  # its type and image, one version
    assert len(asked(sandbox, "DescribeLaunchTemplates")) == 1  # what $Latest names

    sandbox.autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", DesiredCapacity=4)
    sandbox.advance(FROZEN_TIMING["activity_seconds"])  # the launch's scaling activity starts
    grown = aws.with_details(aws.groups(["workers"])[0])
    (new,) = {i.id for i in grown.instances} - {i.id for i in first.instances}
    assert grown.instance(new) is not None
    assert all(i.launched_at for i in grown.instances)
    assert [ids(t) for t in asked(sandbox, "DescribeInstances")] == [{i.id for i in first.instances}, {new}]


def test_latest_is_looked_up_again_once_an_instance_shows_a_version_not_seen(
    sandbox: SandboxClient, aws: Aws
) -> None:
    (group,) = aws.groups(["workers"])
    assert group.launch.version == "1"
    template = group.launch.template_id
    image = sandbox.admin("GET", "info")["world"]["images"]["new"]
    # Another hand makes version 2: until an instance shows it, the group is taken to launch version 1.
    sandbox.ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"ImageId": image}
    )
    assert aws.groups(["workers"])[0].launch.version == "1"
    sandbox.autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", DesiredCapacity=4)
    sandbox.advance(FROZEN_TIMING["activity_seconds"])  # the launch's scaling activity starts
    assert aws.groups(["workers"])[0].launch.version == "2"  # an instance launched from version 2
    assert len(asked(sandbox, "DescribeLaunchTemplates")) == 2

    # A version nodeswap makes is known at once.
    assert aws.create_version(aws.groups(["workers"])[0], image) == "3"
    assert aws.groups(["workers"])[0].launch.version == "3"
    assert len(asked(sandbox, "DescribeLaunchTemplates")) == 3


def test_auto_scalings_reaction_is_read_from_its_launch_activities_causes() -> None:
    """The cause of a launch says when the capacity change was asked for and when the launch started, as
    AWS writes it; terminations and causes without both times say nothing."""
    launch = (
        "At 2026-11-27T23:44:39Z a user request update of AutoScalingGroup constraints to min: 3, max: 6, "
        "desired: 6 changing the desired capacity from 3 to 6. At 2026-11-27T23:44:51Z an instance was "
        "started in response to a difference between desired and actual capacity, increasing the capacity "
        "from 3 to 6."
    )
    launches = [launch, launch, launch.replace("23:44:51Z", "23:45:09Z")]  # 12, 12 and 30 s
    other = [
        "At 2026-11-27T23:50:00Z an instance was taken out of service in response to a user request.",
        "An instance was started in response to a difference between desired and actual capacity.",
    ]
    activities = [{"Cause": cause} for cause in [*launches, *other]]
    assert _median_reaction(activities) == 12.0
    assert _median_reaction([{"Cause": cause} for cause in other]) is None
