"""Launch template versions made from a source version: the sandbox resolves SourceVersion as EC2 does
(a number, $Latest or $Default; anything else names no version), and `replace --ami` bases its version
on the one the group launches, whichever way the group names it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e import Cli
from tests.sandbox_client import QUICK_KUBERNETES, QUICK_TIMING, SandboxClient


def two_versions(world: SandboxClient) -> str:
    """Version 2, an m5.xlarge, beside the seeded version 1 (m5.large), which stays the default."""
    template_id: str = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    world.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion="1", LaunchTemplateData={"InstanceType": "m5.xlarge"}
    )
    return template_id


def data_of(world: SandboxClient, template_id: str, version: str) -> dict[str, Any]:
    (found,) = world.ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=[version])[
        "LaunchTemplateVersions"
    ]
    data: dict[str, Any] = found["LaunchTemplateData"]
    return data


@pytest.mark.parametrize(("source", "instance_type"), [("$Latest", "m5.xlarge"), ("$Default", "m5.large")])
def test_an_alias_as_source_version_is_the_version_it_names(
    sandbox: SandboxClient, source: str, instance_type: str
) -> None:
    template_id = two_versions(sandbox)
    created = sandbox.ec2.create_launch_template_version(
        LaunchTemplateId=template_id, SourceVersion=source, LaunchTemplateData={"ImageId": "ami-12345678"}
    )["LaunchTemplateVersion"]
    assert created["VersionNumber"] == 3
    assert data_of(sandbox, template_id, "3") == {"ImageId": "ami-12345678", "InstanceType": instance_type}


@pytest.mark.parametrize("source", ["3", "0", "-1", "latest", "two"])
def test_a_source_version_that_names_no_version_is_refused(sandbox: SandboxClient, source: str) -> None:
    template_id = two_versions(sandbox)
    with pytest.raises(ClientError) as refused:
        sandbox.ec2.create_launch_template_version(
            LaunchTemplateId=template_id, SourceVersion=source, LaunchTemplateData={"ImageId": "ami-12345678"}
        )
    assert refused.value.response["Error"]["Code"] == "InvalidLaunchTemplateId.VersionNotFound"
    assert source in refused.value.response["Error"]["Message"]
    versions = sandbox.ec2.describe_launch_template_versions(LaunchTemplateId=template_id)
    assert len(versions["LaunchTemplateVersions"]) == 2  # nothing was made


@pytest.mark.parametrize(("asked", "instance_type"), [("$Latest", "m5.xlarge"), ("$Default", "m5.large")])
def test_replace_ami_bases_its_version_on_the_one_the_group_launches(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path, asked: str, instance_type: str
) -> None:
    world = start_sandbox(
        timing=QUICK_TIMING,
        kubernetes=QUICK_KUBERNETES,
        groups=[{"min_size": 1, "max_size": 2, "desired_capacity": 1, "launch_template_version": asked}],
    )
    template_id = two_versions(world)
    cli = Cli(world, tmp_path)
    ami = cli.new_image()
    result = cli("replace", "--asg", "workers", "--ami", ami, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert data_of(world, template_id, "3") == {"ImageId": ami, "InstanceType": instance_type}
    assert world.group()["LaunchTemplate"]["Version"] == "3"
    (serving,) = [i for i in world.group()["Instances"] if i["LifecycleState"] == "InService"]
    assert serving["LaunchTemplate"]["Version"] == "3"
    (reservation,) = world.ec2.describe_instances(InstanceIds=[serving["InstanceId"]])["Reservations"]
    assert reservation["Instances"][0]["InstanceType"] == instance_type
