"""The AWS adapter: the only module that talks to Auto Scaling and EC2 (through boto3).

It returns nodeswap's model, batches describes (one call per group listing, never one per instance),
describes what never changes once (an instance's launch time and image, a launch template version),
retries throttling and transient failures as ``nodeswap.retry`` says, treats "already done" as success
(terminating a terminating instance, completing a completed lifecycle action) and translates SDK errors
into nodeswap's errors with a remedy: an action the IAM policy does not allow becomes an AccessDenied
naming the action to grant.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import statistics
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigNotFound,
    ConfigParseError,
    CredentialRetrievalError,
    HTTPClientError,
    InvalidConfigError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

from nodeswap import USER_AGENT
from nodeswap.errors import AccessDenied, OperationError, Unreachable, UsageError
from nodeswap.model import Group, Instance, LaunchSpec, LifecycleHook, Resources
from nodeswap.reach import CONNECT_TIMEOUT, failure
from nodeswap.retry import retrying

T = TypeVar("T")

# botocore's adaptive mode for its client-side rate limiter alone: once a client is throttled, a token
# bucket paces its requests to the rate AWS lets through, and speeds up again as they succeed (Auto
# Scaling's budget is shared with cluster-autoscaler: a client that backs off leaves it room). Its own
# retries are off (one attempt): every retry is nodeswap.retry's, which waits throttling out.
RETRIES = {"mode": "adaptive", "total_max_attempts": 1}
CONNECTIONS = 20
# How AWS says a request was throttled (botocore's list, less LimitExceededException: Auto Scaling
# answers that for a quota reached, which waiting does not lift).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "EC2ThrottledException",
        "SlowDown",
    }
)
# A request that failed in passing (botocore's transient errors): worth a few more tries.
_TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
STATE_TAG_PREFIX = "nodeswap.io/"
_FINISHED = ("Successful", "Failed", "Cancelled")

# How AWS answers a request whose credentials it does not accept: unknown, expired, or signed wrongly
# (AWS API reference, "Common Errors"; EC2 "Error codes for the Amazon EC2 API").
REJECTED_CREDENTIALS_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AuthFailure",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
# What botocore raises for an AWS configuration it cannot use, and for credentials it cannot get.
_CONFIGURATION_ERRORS = (
    ProfileNotFound,
    ConfigNotFound,
    ConfigParseError,
    InvalidConfigError,
    InvalidRegionError,
)
_CREDENTIALS_ERRORS = (PartialCredentialsError, CredentialRetrievalError, TokenRetrievalError, SSOError)
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


def _throttled(error: BaseException) -> bool:
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in THROTTLING_CODES


def _transient(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return (
            error.response.get("Error", {}).get("Code") in _TRANSIENT_CODES or status in _TRANSIENT_STATUSES
        )
    return isinstance(error, BotoConnectionError | HTTPClientError)


_retrying = retrying(throttled=_throttled, transient=_transient)


def _call(what: str, request: Callable[[], T]) -> T:
    """Make a request, retried as ``nodeswap.retry`` says; what still fails becomes nodeswap's error,
    naming ``what`` (``_translated``)."""
    with _translated(what):
        return _retrying(request)()


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
    except _CONFIGURATION_ERRORS as exc:
        raise UsageError(
            f"the AWS configuration does not work, trying to {what}: {exc}",
            "fix --region, --profile (AWS_PROFILE) or the file named; aws configure list shows what is used",
        ) from exc
    except _CREDENTIALS_ERRORS as exc:
        raise UsageError(
            f"could not get AWS credentials, trying to {what}: {exc}",
            "renew them (aws sso login for an SSO profile) or fix the profile's credential source",
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
        if code in ACCESS_DENIED_CODES:
            raise _denied(what, exc.operation_name, code, message) from exc
        if code in REJECTED_CREDENTIALS_CODES:
            raise UsageError(
                f"AWS rejected the credentials ({code}) while trying to {what}: {message}",
                "renew them, or check the profile or keys and the region (aws sts get-caller-identity "
                "tries them)",
            ) from exc
        raise OperationError(
            f"AWS refused to {what}: {code}: {message}", "see the message; re-run when fixed"
        ) from exc
    except BotoCoreError as exc:
        raise OperationError(f"could not {what}: {exc}", "check the network and AWS_ENDPOINT_URL") from exc
    except ResponseParserError as exc:  # not a BotoCoreError: an answer in no format AWS's API uses
        raise OperationError(
            f"could not {what}: the answer does not parse as AWS's API",
            "check that AWS_ENDPOINT_URL, if set, and any proxy (HTTPS_PROXY) lead to AWS's API",
        ) from exc


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


@contextmanager
def _endpoint_checked() -> Iterator[None]:
    """botocore's ValueError for an endpoint URL it cannot use, as what it is: a configuration error."""
    try:
        yield
    except ValueError as exc:
        raise UsageError(
            f"{exc}: the AWS endpoint (from AWS_ENDPOINT_URL or the profile's endpoint_url) is not a URL",
            "write it as http(s)://HOST[:PORT], or unset it to use AWS's own",
        ) from exc


def _first_contact(sdk: Any) -> Any:
    """The client, raising Unreachable at once for a connection it cannot make until its endpoint has
    answered once (``nodeswap.reach``); from then on such a failure is transient, and retried."""
    answered = threading.Event()

    def answer(**_: Any) -> None:
        answered.set()

    def failed(exception: BaseException, **_: Any) -> None:
        if isinstance(exception, BotoConnectionError) and not answered.is_set():
            endpoint = exception.kwargs.get("endpoint_url") or sdk.meta.endpoint_url
            raise Unreachable("AWS", endpoint, failure(exception), _reach_remedy(endpoint)) from exception

    # botocore's hooks around every call: after-call once an answer came (an error response too),
    # after-call-error when none did.
    sdk.meta.events.register("after-call", answer)
    sdk.meta.events.register("after-call-error", failed)
    return sdk


def _reach_remedy(endpoint: str) -> str:
    host = urlsplit(endpoint).hostname or ""
    if host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return f"check that this machine reaches {host} (network, firewall, HTTPS_PROXY) and --region"
    return (
        "the endpoint is AWS_ENDPOINT_URL's (or the profile's endpoint_url): point it at a running endpoint, "
        "or unset it to use AWS's own"
    )


class Aws:
    """One run's clients. What never changes once described is described once per ``Aws``: an instance's
    launch time and image (by instance id), a launch template version's data (by template and number), a
    launch configuration's instance type. So is the number $Latest and $Default name, until a group shows
    an instance launched from a version not seen before (someone made or chose another since) or
    nodeswap creates one."""

    def __init__(self, region: str | None = None, profile: str | None = None) -> None:
        with _translated("set up the AWS session"), _endpoint_checked():
            session = boto3.Session(region_name=region, profile_name=profile)
            # Connections kept open: the requests a rollout makes at once (run.IN_FLIGHT), and room.
            config = Config(
                user_agent_extra=USER_AGENT,
                retries=RETRIES,
                max_pool_connections=CONNECTIONS,
                connect_timeout=CONNECT_TIMEOUT,
            )
            self.autoscaling = _first_contact(session.client("autoscaling", config=config))
            self.ec2 = _first_contact(session.client("ec2", config=config))
        self.region = session.region_name
        self._details: dict[str, tuple[datetime, str]] = {}  # instance id -> launch time, image
        self._versions: dict[tuple[str, str], dict[str, Any]] = {}  # (template, number) -> its data
        self._configurations: dict[str, str] = {}  # launch configuration -> its instance type
        self._named: dict[tuple[str, str], str] = {}  # (template, "$Latest"/"$Default") -> the number
        self._launched_from: defaultdict[str, set[str]] = defaultdict(set)  # template -> versions seen
        self._mixed_types: dict[str, tuple[str, ...]] = {}  # group -> its mixed instances policy's types

    # ----- reads -------------------------------------------------------------------------------

    def groups(self, names: list[str], *, full: bool = False) -> list[Group]:
        """The named groups (a UsageError names any that does not exist), in one paginated call; with
        ``full``, also their lifecycle hooks and whether a scaling activity is in progress (up to two
        more calls per group)."""
        described = _call(
            f"describe Auto Scaling groups {', '.join(names)}",
            lambda: self._describe_groups(AutoScalingGroupNames=names),
        )
        found = {g["AutoScalingGroupName"] for g in described}
        missing = [name for name in names if name not in found]
        if missing:
            raise UsageError(
                f"no Auto Scaling group named {', '.join(missing)} in region {self.region}",
                "check the name (aws autoscaling describe-auto-scaling-groups) and --region",
            )
        return [self._group(raw, full) for raw in described]

    def groups_by_tag(self, key: str, value: str) -> list[Group]:
        described = _call(
            f"find Auto Scaling groups tagged {key}={value}",
            lambda: self._describe_groups(Filters=[{"Name": f"tag:{key}", "Values": [value]}]),
        )
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
        hooks: tuple[LifecycleHook, ...] = ()
        activities = []
        if full:
            recent = {"AutoScalingGroupName": name, "MaxRecords": 10}
            described = _call(
                f"describe the scaling activities of {name}",
                lambda: self.autoscaling.describe_scaling_activities(**recent),
            )
            activities = described["Activities"]
            hooks = self.hooks(name)
        if "MixedInstancesPolicy" in raw:
            overrides = raw["MixedInstancesPolicy"]["LaunchTemplate"].get("Overrides") or []
            self._mixed_types[name] = tuple(o["InstanceType"] for o in overrides if "InstanceType" in o)
        self._notice_versions(raw.get("Instances", []))
        return Group(
            name=name,
            min_size=raw["MinSize"],
            max_size=raw["MaxSize"],
            desired=raw["DesiredCapacity"],
            launch=self._group_launch(raw),
            launch_asked=(template.get("Version") or "$Default") if (template := _template_of(raw)) else None,
            instances=tuple(self._instance(i) for i in raw.get("Instances", [])),
            suspended=frozenset(p["ProcessName"] for p in raw.get("SuspendedProcesses", [])),
            hooks=hooks,
            tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
            busy=full and _busy(raw, activities),
            reaction_seconds=_median_reaction(activities),
            mixed="MixedInstancesPolicy" in raw,
            zones=tuple(raw.get("AvailabilityZones", [])),
        )

    def hooks(self, group: str) -> tuple[LifecycleHook, ...]:
        """The group's lifecycle hooks (one call)."""
        described = _call(
            f"describe the lifecycle hooks of {group}",
            lambda: self.autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"],
        )
        return tuple(
            LifecycleHook(
                h["LifecycleHookName"],
                h["LifecycleTransition"],
                h.get("HeartbeatTimeout", 3600),
                h.get("DefaultResult", "ABANDON"),
            )
            for h in described
        )

    def _notice_versions(self, instances: list[dict[str, Any]]) -> None:
        """An instance launched from a version of a template not seen before means $Latest or $Default
        may name another version than last described: described again at the next resolution."""
        for instance in instances:
            template = instance.get("LaunchTemplate")
            if template is None:
                continue
            template_id, seen = (
                template["LaunchTemplateId"],
                self._launched_from[template["LaunchTemplateId"]],
            )
            if str(template.get("Version")) not in seen:
                seen.add(str(template.get("Version")))
                self._forget_named(template_id)

    def forget_versions(self) -> None:
        """Resolve $Latest and $Default afresh from now on: the templates may have changed meanwhile."""
        self._named.clear()

    def _forget_named(self, template_id: str) -> None:
        for alias in ("$Latest", "$Default"):
            self._named.pop((template_id, alias), None)

    def _group_launch(self, raw: dict[str, Any]) -> LaunchSpec:
        template = _template_of(raw)
        if template:
            return self._resolved(template)
        return LaunchSpec(configuration=raw.get("LaunchConfigurationName"))

    def _resolved(self, template: dict[str, Any]) -> LaunchSpec:
        """$Latest and $Default (or no version, meaning $Default) become the version number."""
        template_id, version = template["LaunchTemplateId"], template.get("Version") or "$Default"
        if version in ("$Latest", "$Default"):
            if (template_id, version) not in self._named:
                found = _call(
                    f"resolve launch template {template_id} {version}",
                    lambda: self.ec2.describe_launch_templates(LaunchTemplateIds=[template_id]),
                )
                described = found["LaunchTemplates"][0]
                self._named[(template_id, "$Latest")] = str(described["LatestVersionNumber"])
                self._named[(template_id, "$Default")] = str(described["DefaultVersionNumber"])
            version = self._named[(template_id, version)]
        return LaunchSpec(template_id, template.get("LaunchTemplateName"), str(version))

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
        """The group with its instances' launch times and images and the instance types it launches.
        Only instances not described before are described (one paginated EC2 call): neither detail ever
        changes for an instance."""
        new = [i.id for i in group.instances if i.id not in self._details]
        if new:

            def describe() -> dict[str, tuple[datetime, str]]:
                pages = self.ec2.get_paginator("describe_instances").paginate(InstanceIds=new)
                return {
                    i["InstanceId"]: (i["LaunchTime"], i["ImageId"])
                    for p in pages
                    for r in p["Reservations"]
                    for i in r["Instances"]
                }

            self._details.update(_call(f"describe the instances of {group.name}", describe))
        instances = tuple(
            dataclasses.replace(i, launched_at=details[0], image_id=details[1])
            if (details := self._details.get(i.id))
            else i
            for i in group.instances
        )
        return dataclasses.replace(group, instances=instances, instance_types=self._launch_types(group))

    def _launch_types(self, group: Group) -> tuple[str, ...]:
        """The instance types the group launches: a mixed instances policy's overrides, else the launch
        template version's or the launch configuration's type."""
        if group.mixed and self._mixed_types.get(group.name):
            return self._mixed_types[group.name]
        if group.launch.template_id is not None:
            found = (self._version_data(group.launch) or {}).get("InstanceType")
            return (found,) if found else ()
        name = group.launch.configuration
        if name is not None and name not in self._configurations:
            found = _call(
                f"describe what {group.name} launches",
                lambda: self.autoscaling.describe_launch_configurations(LaunchConfigurationNames=[name])[
                    "LaunchConfigurations"
                ],
            )
            if found:
                self._configurations[name] = found[0]["InstanceType"]
        return (self._configurations[name],) if name in self._configurations else ()

    def _version_data(self, launch: LaunchSpec) -> dict[str, Any] | None:
        """A launch template version's data, described once per number (a version never changes); None
        if there is no such version."""
        assert launch.template_id is not None
        template_id, version = launch.template_id, launch.version or "$Default"
        if (template_id, version) in self._versions:
            return self._versions[(template_id, version)]
        versions = _call(
            f"describe {launch.describe()}",
            lambda: self.ec2.describe_launch_template_versions(
                LaunchTemplateId=template_id, Versions=[version]
            )["LaunchTemplateVersions"],
        )
        data: dict[str, Any] | None = versions[0]["LaunchTemplateData"] if versions else None
        if data is not None and version.isdigit():
            self._versions[(template_id, version)] = data
        return data

    def instance_sizes(self, types: list[str]) -> dict[str, Resources]:
        """Each type's capacity (vCPUs, memory, pods by the VPC CNI's ENI formula), for types no node of
        the cluster runs yet."""
        if not types:
            return {}

        def describe() -> list[dict[str, Any]]:
            pages = self.ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=types)
            return [t for p in pages for t in p["InstanceTypes"]]

        sizes = {}
        for raw in _call(f"describe instance types {', '.join(types)}", describe):
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
            found = _call(
                f"describe AMI {image_id}", lambda: self.ec2.describe_images(ImageIds=[image_id])["Images"]
            )
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
        image: str | None = (self._version_data(launch) or {}).get("ImageId")
        return image

    # ----- writes ------------------------------------------------------------------------------

    def set_capacity(self, group: str, *, desired: int | None = None, max_size: int | None = None) -> None:
        update: dict[str, Any] = {"AutoScalingGroupName": group}
        if desired is not None:
            update["DesiredCapacity"] = desired
        if max_size is not None:
            update["MaxSize"] = max_size
        _call(f"update the capacity of {group}", lambda: self.autoscaling.update_auto_scaling_group(**update))

    def suspend(self, group: str, processes: list[str]) -> None:
        if processes:
            _call(
                f"suspend {', '.join(processes)} on {group}",
                lambda: self.autoscaling.suspend_processes(
                    AutoScalingGroupName=group, ScalingProcesses=processes
                ),
            )

    def resume(self, group: str, processes: list[str]) -> None:
        if processes:
            _call(
                f"resume {', '.join(processes)} on {group}",
                lambda: self.autoscaling.resume_processes(
                    AutoScalingGroupName=group, ScalingProcesses=processes
                ),
            )

    def tag(self, group: str, tags: dict[str, str]) -> None:
        written = [
            {
                "ResourceId": group,
                "ResourceType": "auto-scaling-group",
                "Key": k,
                "Value": v,
                "PropagateAtLaunch": False,
            }
            for k, v in tags.items()
        ]
        _call(
            f"record the rollout's state on {group}",
            lambda: self.autoscaling.create_or_update_tags(Tags=written),
        )

    def untag(self, group: str, keys: list[str]) -> None:
        if keys:
            removed = [{"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": k} for k in keys]
            _call(
                f"remove the rollout's state from {group}", lambda: self.autoscaling.delete_tags(Tags=removed)
            )

    def terminate(self, instance_id: str) -> None:
        """Terminate without replacement. An instance already leaving the group is success."""
        try:
            _call(
                f"terminate {instance_id}",
                lambda: self.autoscaling.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
                ),
            )
        except OperationError as exc:
            if "not found" not in exc.message.lower():
                raise

    def complete(self, group: str, hook: str, instance_id: str) -> bool:
        """CONTINUE a pending lifecycle action; False if none is pending (not yet, or already done)."""
        try:
            _call(
                f"complete lifecycle hook {hook} for {instance_id}",
                lambda: self.autoscaling.complete_lifecycle_action(
                    AutoScalingGroupName=group,
                    LifecycleHookName=hook,
                    InstanceId=instance_id,
                    LifecycleActionResult="CONTINUE",
                ),
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
        # One token for every try: a retry after a 5xx that did create the version gets that version
        # back rather than a second one.
        token = uuid.uuid4().hex
        # The source is the number the group's $Latest or $Default resolved to when it was described
        # (LaunchSpec.version), the version the plan showed: the API reference documents SourceVersion
        # as a version, not the aliases, and $Latest could name a version made since.
        created = _call(
            f"create a launch template version with {image_id}",
            lambda: self.ec2.create_launch_template_version(
                LaunchTemplateId=launch.template_id,
                SourceVersion=launch.version,
                LaunchTemplateData={"ImageId": image_id},
                VersionDescription=f"{USER_AGENT} --ami {image_id}",
                ClientToken=token,
            )["LaunchTemplateVersion"],
        )
        self._forget_named(launch.template_id)  # $Latest names the new version now
        return str(created["VersionNumber"])

    def point_at(self, group: str, template_id: str, version: str) -> None:
        """Make the group launch ``version`` of its launch template."""
        _call(
            f"point {group} at launch template {template_id} version {version}",
            lambda: self.autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=group,
                LaunchTemplate={"LaunchTemplateId": template_id, "Version": version},
            ),
        )


def _busy(raw: dict[str, Any], activities: list[dict[str, Any]]) -> bool:
    """A scaling activity is in progress: instances launching or leaving, desired capacity not yet acted
    on, or an unfinished activity."""
    instances = raw.get("Instances", [])
    if any(i["LifecycleState"] not in ("InService", "Standby") for i in instances):
        return True
    # Auto Scaling starts the activities a change of desired capacity calls for seconds later: until then
    # the group lists neither them nor their instances, only a desired capacity it does not hold.
    if sum(i["LifecycleState"] == "InService" for i in instances) != raw["DesiredCapacity"]:
        return True
    return any(a.get("StatusCode") not in _FINISHED for a in activities)


# A launch activity's cause gives the time of the change that called for it, then the time the launch
# started: "At 2026-11-27T23:44:39Z a user request update ... At 2026-11-27T23:44:52Z an instance was
# started in response to a difference between desired and actual capacity, ...".
_CAUSE_TIME = re.compile(r"At (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) ")
_STARTED = "an instance was started in response to a difference between desired and actual capacity"


def _median_reaction(activities: list[dict[str, Any]]) -> float | None:
    """How long Auto Scaling took to start the recent launches after the capacity changes that called
    for them (the median, in seconds); None when no activity says."""
    reactions = []
    for activity in activities:
        cause = activity.get("Cause", "")
        times = _CAUSE_TIME.findall(cause)
        if _STARTED in cause and len(times) >= 2:
            asked, started = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (times[0], times[-1]))
            reactions.append((started - asked).total_seconds())
    return statistics.median(reactions) if reactions else None


def _template_of(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A described group's launch template specification, its own or its mixed instances policy's."""
    template: dict[str, Any] | None = raw.get("LaunchTemplate") or (
        (raw.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification")
    )
    return template
