"""Seeding: build the scenario's AWS world through the sandbox's own API, as a user would."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.config import Config

from nodeswap.sandbox.clock import Scheduler
from nodeswap.sandbox.scenario import GroupSpec, Scenario

IMAGE_TAG = "nodeswap-sandbox:image"


@dataclass(frozen=True)
class SeededGroup:
    name: str
    launch_template_id: str
    target_group_arn: str | None


@dataclass(frozen=True)
class SeededWorld:
    vpc_id: str
    subnet_ids: dict[str, str]  # availability zone -> subnet
    images: dict[str, str]  # "old"/"new" -> AMI id
    groups: list[SeededGroup]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed(scenario: Scenario, endpoint: str, scheduler: Scheduler) -> SeededWorld:
    session = boto3.Session(
        aws_access_key_id="sandbox", aws_secret_access_key="sandbox", region_name=scenario.region
    )
    config = Config(user_agent_extra="nodeswap-sandbox-seed", retries={"mode": "standard"})
    ec2 = session.client("ec2", endpoint_url=endpoint, config=config)
    autoscaling = session.client("autoscaling", endpoint_url=endpoint, config=config)
    elbv2 = session.client("elbv2", endpoint_url=endpoint, config=config)

    vpc_id = ec2.create_vpc(CidrBlock=scenario.vpc_cidr)["Vpc"]["VpcId"]
    blocks = ipaddress.ip_network(scenario.vpc_cidr).subnets(prefixlen_diff=4)
    subnet_ids = {
        zone: ec2.create_subnet(VpcId=vpc_id, CidrBlock=str(next(blocks)), AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for zone in scenario.availability_zones
    }
    images = {}
    for role, name in (("old", scenario.images.old), ("new", scenario.images.new)):
        images[role] = ec2.register_image(
            Name=name, Architecture="x86_64", RootDeviceName="/dev/xvda", VirtualizationType="hvm"
        )["ImageId"]
        ec2.create_tags(Resources=[images[role]], Tags=[{"Key": IMAGE_TAG, "Value": role}])
    groups = [
        _seed_group(
            spec,
            ec2,
            autoscaling,
            elbv2,
            vpc_id=vpc_id,
            subnets=list(subnet_ids.values()),
            image=images["old"],
        )
        for spec in scenario.groups
    ]
    # The world starts with its instances booted: start the groups' launch activities and then fire the
    # boot timers they set, now instead of waiting.
    scheduler.fast_forward(scenario.timing.activity_seconds)
    scheduler.fast_forward(scenario.timing.boot_seconds)
    for spec in scenario.groups:
        for hook in spec.lifecycle_hooks:
            autoscaling.put_lifecycle_hook(
                LifecycleHookName=hook.name,
                AutoScalingGroupName=spec.name,
                LifecycleTransition=f"autoscaling:EC2_INSTANCE_{hook.transition.upper()}",
                HeartbeatTimeout=hook.heartbeat_timeout,
                DefaultResult=hook.default_result,
            )
    return SeededWorld(vpc_id, subnet_ids, images, groups)


def _seed_group(
    spec: GroupSpec, ec2: Any, autoscaling: Any, elbv2: Any, *, vpc_id: str, subnets: list[str], image: str
) -> SeededGroup:
    template_id = ec2.create_launch_template(
        LaunchTemplateName=spec.name,
        LaunchTemplateData={"ImageId": image, "InstanceType": spec.instance_type},
    )["LaunchTemplate"]["LaunchTemplateId"]
    target_group_arn = None
    if spec.target_group is not None:
        target_group_arn = elbv2.create_target_group(
            Name=spec.target_group.name, Protocol="HTTP", Port=spec.target_group.port, VpcId=vpc_id
        )["TargetGroups"][0]["TargetGroupArn"]
        elbv2.modify_target_group_attributes(
            TargetGroupArn=target_group_arn,
            Attributes=[
                {
                    "Key": "deregistration_delay.timeout_seconds",
                    "Value": str(spec.target_group.deregistration_delay),
                }
            ],
        )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=spec.name,
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": spec.launch_template_version},
        MinSize=spec.min_size,
        MaxSize=spec.max_size,
        DesiredCapacity=spec.desired_capacity,
        VPCZoneIdentifier=",".join(subnets),
        TargetGroupARNs=[target_group_arn] if target_group_arn else [],
        Tags=[
            {
                "Key": key,
                "Value": value,
                "PropagateAtLaunch": True,
                "ResourceId": spec.name,
                "ResourceType": "auto-scaling-group",
            }
            for key, value in spec.tags.items()
        ],
    )
    return SeededGroup(spec.name, template_id, target_group_arn)
