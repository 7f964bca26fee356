"""The AWS adapter: the only module that talks to Auto Scaling and EC2 (through boto3).

It returns nodeswap's model, batches describes (one call per group listing, never one per instance),
treats "already done" as success (terminating a terminating instance, completing a completed
lifecycle action) and translates SDK errors into nodeswap's errors with a remedy: an action the IAM
policy does not allow becomes an AccessDenied naming the action to grant.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from nodeswap import USER_AGENT
from nodeswap.errors import AccessDenied, OperationError, UsageError
from nodeswap.model import Group, Instance, LaunchSpec, LifecycleHook, Resources

# Retries are botocore's: standard mode backs off on throttling (Throttling, RequestLimitExceeded) and 5xx.
RETRIES = {"mode": "standard", "total_max_attempts": 10}
STATE_TAG_PREFIX = "nodeswap.io/"
_FINISHED = ("Successful", "Failed", "Cancelled")

# How AWS answers a call the caller's IAM policy does not allow: Auto Scaling (and IAM, STS) 403
# AccessDenied; EC2 403 UnauthorizedOperation; the JSON-protocol services AccessDeniedException.
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
# "User: arn:aws:iam::123456789012:user/x is not authorized to perform: ec2:DescribeInstances ..."; EC2
# may say only "You are not authorized to perform this operation" (with an encoded message).
_NAMED_ACTION = re.compile(r"not authorized to perform: ([\w-]+:\w+)")
# Auto Scaling's answer when the caller may not launch the launch template a group is pointed at: it
# checks ec2:RunInstances, and iam:PassRole for a template naming an instance profile, ec2:CreateTags for
# one with tag specifications (AWS: "Control Amazon EC2 launch template usage in Auto Scaling groups").
_LAUNCH_TEMPLATE_DENIED = "not authorized to use launch template"
LAUNCH_TEMPLATE_ACTIONS = "ec2:RunInstances (and iam:PassRole, ec2:CreateTags)"
PERMISSIONS = (
    "every AWS action nodeswap needs is listed in terraform/nodeswap-actions.json, the source of the "
    "Terraform module's policy, and in the README's permission list"
)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except NoCredentialsError as exc:
        raise UsageError(
            f"no AWS credentials found while trying to {what}",
            "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass --profile",
        ) from exc
    except NoRegionError as exc:
        raise UsageError(
            f"no AWS region set while trying to {what}", "pass --region or set AWS_REGION"
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
        if code in ACCESS_DENIED_CODES:
            raise _denied(what, exc.operation_name, code, message) from exc
        if code in (
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "AuthFailure",
            "SignatureDoesNotMatch",
        ):
            raise UsageError(
                f"AWS rejected the credentials ({code}) while trying to {what}: {message}",
                "check the profile or keys and the region",
            ) from exc
        raise OperationError(
            f"AWS refused to {what}: {code}: {message}", "see the message; re-run when fixed"
        ) from exc
    except BotoCoreError as exc:
        raise OperationError(f"could not {what}: {exc}", "check the network and AWS_ENDPOINT_URL") from exc


def _denied(what: str, operation: str, code: str, message: str) -> AccessDenied:
    """The denial named as IAM names the action to grant, with the remedy."""
    if _LAUNCH_TEMPLATE_DENIED in message:
        return AccessDenied(
            LAUNCH_TEMPLATE_ACTIONS,
            f"AWS refused to {what} ({code}: {message}): Auto Scaling checks that the caller may launch "
            "the template: ec2:RunInstances, and iam:PassRole when the template names an instance "
            "profile, ec2:CreateTags when it has tag specifications",
            f"grant these to the credentials nodeswap runs with ({PERMISSIONS})",
        )
    named = _NAMED_ACTION.search(message)
    action = named.group(1) if named else f"{_service_of(operation)}:{operation}"
    return AccessDenied(
        action,
        f"AWS denied {action}, needed to {what}: the IAM policy of these credentials does not allow it "
        f"({code}: {message})",
        f"grant {action} to the credentials nodeswap runs with ({PERMISSIONS})",
    )


def _service_of(operation: str) -> str:
    """The IAM prefix of an operation nodeswap calls: Auto Scaling's, else EC2's."""
    return "autoscaling" if operation in _autoscaling_operations() else "ec2"


@functools.cache
def _autoscaling_operations() -> frozenset[str]:
    return frozenset(botocore.session.get_session().get_service_model("autoscaling").operation_names)


class Aws:
    def __init__(self, region: str | None = None, profile: str | None = None) -> None:
        with _translated("set up the AWS session"):
            session = boto3.Session(region_name=region, profile_name=profile)
            config = Config(user_agent_extra=USER_AGENT, retries=RETRIES)
            self.autoscaling = session.client("autoscaling", config=config)
            self.ec2 = session.client("ec2", config=config)
        self.region = session.region_name

    # ----- reads -------------------------------------------------------------------------------

    def groups(self, names: list[str], *, full: bool = False) -> list[Group]:
        """The named groups (a UsageError names any that does not exist); with ``full``, also their
        lifecycle hooks and whether a scaling activity is in progress (two more calls per group)."""
        with _translated(f"describe Auto Scaling groups {', '.join(names)}"):
            described = self._describe_groups(AutoScalingGroupNames=names)
        found = {g["AutoScalingGroupName"] for g in described}
        missing = [name for name in names if name not in found]
        if missing:
            raise UsageError(
                f"no Auto Scaling group named {', '.join(missing)} in region {self.region}",
                "check the name (aws autoscaling describe-auto-scaling-groups) and --region",
            )
        return [self._group(raw, full) for raw in described]

    def groups_by_tag(self, key: str, value: str) -> list[Group]:
        with _translated(f"find Auto Scaling groups tagged {key}={value}"):
            described = self._describe_groups(Filters=[{"Name": f"tag:{key}", "Values": [value]}])
        if not described:
            raise UsageError(
                f"no Auto Scaling group is tagged {key}={value} in region {self.region}",
                "check the tag and --region",
            )
        return [self._group(raw, full=True) for raw in described]

    def _describe_groups(self, **query: Any) -> list[dict[str, Any]]:
        pages = self.autoscaling.get_paginator("describe_auto_scaling_groups").paginate(**query)
        return [group for page in pages for group in page["AutoScalingGroups"]]

    def _group(self, raw: dict[str, Any], full: bool) -> Group:
        name = raw["AutoScalingGroupName"]
        hooks = []
        if full:
            with _translated(f"describe the lifecycle hooks of {name}"):
                hooks = self.autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
        return Group(
            name=name,
            min_size=raw["MinSize"],
            max_size=raw["MaxSize"],
            desired=raw["DesiredCapacity"],
            launch=self._group_launch(raw),
            launch_asked=(template.get("Version") or "$Default") if (template := _template_of(raw)) else None,
            instances=tuple(self._instance(i) for i in raw.get("Instances", [])),
            suspended=frozenset(p["ProcessName"] for p in raw.get("SuspendedProcesses", [])),
            hooks=tuple(
                LifecycleHook(
                    h["LifecycleHookName"],
                    h["LifecycleTransition"],
                    h.get("HeartbeatTimeout", 3600),
                    h.get("DefaultResult", "ABANDON"),
                )
                for h in hooks
            ),
            tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
            busy=full and self._busy(raw),
            mixed="MixedInstancesPolicy" in raw,
            zones=tuple(raw.get("AvailabilityZones", [])),
        )

    def _busy(self, raw: dict[str, Any]) -> bool:
        """A scaling activity is in progress: instances launching or leaving, or an unfinished activity."""
        if any(i["LifecycleState"] not in ("InService", "Standby") for i in raw.get("Instances", [])):
            return True
        name = raw["AutoScalingGroupName"]
        with _translated(f"describe the scaling activities of {name}"):
            activities = self.autoscaling.describe_scaling_activities(
                AutoScalingGroupName=name, MaxRecords=10
            )
        return any(a.get("StatusCode") not in _FINISHED for a in activities.get("Activities", []))

    def _group_launch(self, raw: dict[str, Any]) -> LaunchSpec:
        template = _template_of(raw)
        if template:
            return self._resolved(template)
        return LaunchSpec(configuration=raw.get("LaunchConfigurationName"))

    def _resolved(self, template: dict[str, Any]) -> LaunchSpec:
        """$Latest and $Default (or no version, meaning $Default) become the version number."""
        version = template.get("Version") or "$Default"
        if version in ("$Latest", "$Default"):
            with _translated(f"resolve launch template {template.get('LaunchTemplateId')} {version}"):
                found = self.ec2.describe_launch_templates(LaunchTemplateIds=[template["LaunchTemplateId"]])
            described = found["LaunchTemplates"][0]
            number = described["LatestVersionNumber" if version == "$Latest" else "DefaultVersionNumber"]
            version = str(number)
        return LaunchSpec(template["LaunchTemplateId"], template.get("LaunchTemplateName"), str(version))

    @staticmethod
    def _instance(raw: dict[str, Any]) -> Instance:
        template = raw.get("LaunchTemplate")
        launch = (
            LaunchSpec(
                template["LaunchTemplateId"], template.get("LaunchTemplateName"), str(template.get("Version"))
            )
            if template
            else LaunchSpec(configuration=raw.get("LaunchConfigurationName"))
        )
        return Instance(
            id=raw["InstanceId"],
            zone=raw["AvailabilityZone"],
            lifecycle_state=raw["LifecycleState"],
            healthy=raw.get("HealthStatus") == "Healthy",
            launch=launch,
            instance_type=raw.get("InstanceType"),
        )

    def with_details(self, group: Group) -> Group:
        """The group with its instances' launch times and images (one paginated EC2 describe) and the
        instance types it launches."""
        ids = [i.id for i in group.instances]
        details: dict[str, dict[str, Any]] = {}
        if ids:
            with _translated(f"describe the instances of {group.name}"):
                pages = self.ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
                details = {
                    i["InstanceId"]: i for p in pages for r in p["Reservations"] for i in r["Instances"]
                }
        instances = tuple(
            dataclasses.replace(i, launched_at=details[i.id]["LaunchTime"], image_id=details[i.id]["ImageId"])
            if i.id in details
            else i
            for i in group.instances
        )
        return dataclasses.replace(group, instances=instances, instance_types=self._launch_types(group))

    def _launch_types(self, group: Group) -> tuple[str, ...]:
        """The instance types the group launches: a mixed instances policy's overrides, else the launch
        template version's or the launch configuration's type."""
        with _translated(f"describe what {group.name} launches"):
            if group.mixed:
                raw = self._describe_groups(AutoScalingGroupNames=[group.name])[0]
                overrides = raw["MixedInstancesPolicy"]["LaunchTemplate"].get("Overrides") or []
                types = tuple(o["InstanceType"] for o in overrides if "InstanceType" in o)
                if types:
                    return types
            if group.launch.template_id is not None:
                versions = self.ec2.describe_launch_template_versions(
                    LaunchTemplateId=group.launch.template_id, Versions=[group.launch.version or "$Default"]
                )["LaunchTemplateVersions"]
                found = versions[0]["LaunchTemplateData"].get("InstanceType") if versions else None
                return (found,) if found else ()
            configurations = self.autoscaling.describe_launch_configurations(
                LaunchConfigurationNames=[group.launch.configuration]
            )["LaunchConfigurations"]
            return (configurations[0]["InstanceType"],) if configurations else ()

    def instance_sizes(self, types: list[str]) -> dict[str, Resources]:
        """Each type's capacity (vCPUs, memory, pods by the VPC CNI's ENI formula), for types no node of
        the cluster runs yet."""
        if not types:
            return {}
        with _translated(f"describe instance types {', '.join(types)}"):
            pages = self.ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=types)
            described = [t for p in pages for t in p["InstanceTypes"]]
        sizes = {}
        for raw in described:
            network = raw.get("NetworkInfo") or {}
            enis, addresses = (
                network.get("MaximumNetworkInterfaces"),
                network.get("Ipv4AddressesPerInterface"),
            )
            sizes[raw["InstanceType"]] = Resources(
                float(raw["VCpuInfo"]["DefaultVCpus"]),
                float(raw["MemoryInfo"]["SizeInMiB"]) * 2**20,
                enis * (addresses - 1) + 2 if enis and addresses else 110,
            )
        return sizes

    def check_image(self, image_id: str) -> None:
        """A UsageError unless the AMI exists in this region (before a template version points at it)."""
        try:
            with _translated(f"describe AMI {image_id}"):
                found = self.ec2.describe_images(ImageIds=[image_id])["Images"]
        except OperationError as exc:
            found = [] if "InvalidAMIID" in exc.message else None
            if found is None:
                raise
        if not found:
            raise UsageError(
                f"--ami: no image {image_id} in region {self.region}",
                "check the AMI id and --region (aws ec2 describe-images --image-ids ...)",
            )

    def image_of(self, launch: LaunchSpec) -> str | None:
        if launch.template_id is None:
            return None
        with _translated(f"describe {launch.describe()}"):
            versions = self.ec2.describe_launch_template_versions(
                LaunchTemplateId=launch.template_id, Versions=[launch.version or "$Default"]
            )["LaunchTemplateVersions"]
        image: str | None = versions[0]["LaunchTemplateData"].get("ImageId") if versions else None
        return image

    # ----- writes ------------------------------------------------------------------------------

    def set_capacity(self, group: str, *, desired: int | None = None, max_size: int | None = None) -> None:
        update: dict[str, Any] = {"AutoScalingGroupName": group}
        if desired is not None:
            update["DesiredCapacity"] = desired
        if max_size is not None:
            update["MaxSize"] = max_size
        with _translated(f"update the capacity of {group}"):
            self.autoscaling.update_auto_scaling_group(**update)

    def suspend(self, group: str, processes: list[str]) -> None:
        if processes:
            with _translated(f"suspend {', '.join(processes)} on {group}"):
                self.autoscaling.suspend_processes(AutoScalingGroupName=group, ScalingProcesses=processes)

    def resume(self, group: str, processes: list[str]) -> None:
        if processes:
            with _translated(f"resume {', '.join(processes)} on {group}"):
                self.autoscaling.resume_processes(AutoScalingGroupName=group, ScalingProcesses=processes)

    def tag(self, group: str, tags: dict[str, str]) -> None:
        with _translated(f"record the rollout's state on {group}"):
            self.autoscaling.create_or_update_tags(
                Tags=[
                    {
                        "ResourceId": group,
                        "ResourceType": "auto-scaling-group",
                        "Key": k,
                        "Value": v,
                        "PropagateAtLaunch": False,
                    }
                    for k, v in tags.items()
                ]
            )

    def untag(self, group: str, keys: list[str]) -> None:
        if keys:
            with _translated(f"remove the rollout's state from {group}"):
                self.autoscaling.delete_tags(
                    Tags=[{"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": k} for k in keys]
                )

    def terminate(self, instance_id: str) -> None:
        """Terminate without replacement. An instance already leaving the group is success."""
        try:
            with _translated(f"terminate {instance_id}"):
                self.autoscaling.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
                )
        except OperationError as exc:
            if "not found" not in exc.message.lower():
                raise

    def complete(self, group: str, hook: str, instance_id: str) -> bool:
        """CONTINUE a pending lifecycle action; False if none is pending (not yet, or already done)."""
        try:
            with _translated(f"complete lifecycle hook {hook} for {instance_id}"):
                self.autoscaling.complete_lifecycle_action(
                    AutoScalingGroupName=group,
                    LifecycleHookName=hook,
                    InstanceId=instance_id,
                    LifecycleActionResult="CONTINUE",
                )
        except OperationError as exc:
            if "No active Lifecycle Action" in exc.message:
                return False
            raise
        return True

    def create_version(self, group: Group, image_id: str) -> str:
        """A new version of the group's launch template, the group's current one with ``image_id``."""
        launch = group.launch
        if launch.template_id is None:
            raise UsageError(
                f"group {group.name} uses a launch configuration; --ami needs a launch template",
                "move the group to a launch template first",
            )
        with _translated(f"create a launch template version with {image_id}"):
            created = self.ec2.create_launch_template_version(
                LaunchTemplateId=launch.template_id,
                SourceVersion=launch.version,
                LaunchTemplateData={"ImageId": image_id},
                VersionDescription=f"{USER_AGENT} --ami {image_id}",
            )["LaunchTemplateVersion"]
        return str(created["VersionNumber"])

    def point_at(self, group: str, template_id: str, version: str) -> None:
        """Make the group launch ``version`` of its launch template."""
        with _translated(f"point {group} at launch template {template_id} version {version}"):
            self.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=group,
                LaunchTemplate={"LaunchTemplateId": template_id, "Version": version},
            )


def _template_of(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A described group's launch template specification, its own or its mixed instances policy's."""
    template: dict[str, Any] | None = raw.get("LaunchTemplate") or (
        (raw.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification")
    )
    return template
