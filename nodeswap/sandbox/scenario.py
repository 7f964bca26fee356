"""The sandbox scenario: the AWS world the sandbox seeds, its timings and injected faults.

A scenario is a YAML file. Every field has a default, so an empty file is a valid scenario, a bare one:
no workloads, no lifecycle hooks. The default scenario, what the sandbox runs when given none, is
``default.yaml`` beside this module (``configs/sandbox.yaml`` links to it), every field spelled out: the
one source of the workloads that ``nodeswap demo`` and a fresh ``sandbox up`` rehearse with. Unknown
fields are rejected so that a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nodeswap.errors import ScenarioError
from nodeswap.yamlfile import load_mapping, validated

DEFAULT_SCENARIO = Path(__file__).with_name("default.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timing(_Strict):
    """How long the simulated machines take, in seconds (fractions allowed so tests run fast)."""

    # Auto Scaling acts on a capacity change a few seconds later, in a scaling activity ("an instance was
    # started in response to a difference between desired and actual capacity" comes after the change);
    # the instance exists from then on. Short by default, so rehearsals stay fast.
    activity_seconds: float = Field(
        default=1.0, ge=0, description="capacity change -> its scaling activity starts"
    )
    boot_seconds: float = Field(default=2.0, ge=0, description="EC2 pending -> running")
    shutdown_seconds: float = Field(default=1.0, ge=0, description="EC2 shutting-down -> terminated")


class LifecycleHookSpec(_Strict):
    name: str = Field(min_length=1, max_length=255)
    transition: Literal["launching", "terminating"]
    # AWS accepts 30-7200 seconds and defaults to 3600 (PutLifecycleHook API reference).
    heartbeat_timeout: int = Field(default=3600, ge=30, le=7200)
    default_result: Literal["CONTINUE", "ABANDON"] = "ABANDON"


class TargetGroupSpec(_Strict):
    name: str = Field(min_length=1, max_length=32)
    port: int = Field(default=80, ge=1, le=65535)
    # Attribute deregistration_delay.timeout_seconds: how long a deregistering target drains, holding a
    # terminating instance before its termination hooks; 0-3600, default 300 (TargetGroupAttribute API).
    deregistration_delay: int = Field(default=300, ge=0, le=3600)


class GroupSpec(_Strict):
    name: str = Field(default="workers", min_length=1, max_length=255)
    min_size: int = Field(default=3, ge=0)
    max_size: int = Field(default=6, ge=0)
    desired_capacity: int = Field(default=3, ge=0)
    instance_type: str = "m5.large"
    # The version the group asks for: "$Latest", "$Default" or a number.
    launch_template_version: str = Field(default="$Latest", pattern=r"^(\$Latest|\$Default|[1-9][0-9]*)$")
    lifecycle_hooks: list[LifecycleHookSpec] = Field(default_factory=list)
    target_group: TargetGroupSpec | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _capacity_in_bounds(self) -> GroupSpec:
        if not self.min_size <= self.desired_capacity <= self.max_size:
            raise ValueError(
                f"need min_size <= desired_capacity <= max_size, got "
                f"{self.min_size} <= {self.desired_capacity} <= {self.max_size}"
            )
        return self


class Images(_Strict):
    """Names of the two AMIs: the one launch template version 1 uses, and a newer bake."""

    old: str = "nodeswap-workers-2026.10"
    new: str = "nodeswap-workers-2026.11"


ImageRole = Literal["old", "new"]


class KubernetesSpec(_Strict):
    """The simulated cluster: how fast machines become nodes, and the workloads present at start."""

    join_seconds: float = Field(default=3.0, ge=0, description="instance running -> Node registered")
    node_ready_seconds: float = Field(default=2.0, ge=0, description="Node registered -> Ready")
    # kube-controller-manager's --node-monitor-grace-period: how long a node's status may go unrenewed
    # before the node lifecycle controller marks it NotReady (Ready Unknown) and taints it unreachable.
    node_monitor_grace_seconds: float = Field(
        default=40.0, ge=0, description="instance shutting down -> Node NotReady"
    )
    node_gone_seconds: float = Field(
        default=5.0, ge=0, description="instance terminated -> Node deleted (once it is NotReady)"
    )
    # kube-controller-manager's pod garbage collector (pkg/controller/podgc, quarantineTime): pods bound to
    # a node that no longer exists are force-deleted once the node has stayed missing this long.
    pod_gc_quarantine_seconds: float = Field(
        default=40.0, ge=0, description="Node deleted -> its pods deleted (pod GC)"
    )
    pod_start_seconds: float = Field(default=1.0, ge=0, description="pod bound -> containers running")
    never_join: list[ImageRole] = Field(
        default_factory=list, description="instances of these AMIs never join"
    )
    never_ready: list[ImageRole] = Field(
        default_factory=list, description="nodes of these AMIs never get Ready"
    )
    workloads: list[dict[str, Any]] = Field(default_factory=list, description="manifests applied at start")
    watch_history: int = Field(default=50_000, ge=1, description="changes a watch can resume across")

    @model_validator(mode="after")
    def _manifests_have_kind(self) -> KubernetesSpec:
        for index, manifest in enumerate(self.workloads):
            if not isinstance(manifest.get("kind"), str) or not isinstance(manifest.get("metadata"), dict):
                raise ValueError(f"workloads[{index}] needs a kind and metadata, like a kubectl manifest")
        return self


class IamSpec(_Strict):
    """Whether requests signed with an IAM user's or an assumed role's keys are checked against their
    policies, as AWS checks them (``nodeswap.sandbox.iam``); other keys act as the account's root."""

    enforce: bool = False


FaultError = Literal["throttle", "internal", "unavailable", "drop"]


class FaultSpec(_Strict):
    """Make matching requests fail: ``throttle`` (AWS Throttling / RequestLimitExceeded, Kubernetes 429
    with Retry-After), ``internal`` (500), ``unavailable`` (503) or, for Kubernetes, ``drop`` (close the
    connection), for a fraction ``rate`` of them, at most ``limit`` times if set. Kubernetes operations
    are named by verb (``patch``), resource (``pods/eviction``) or both (``create:pods/eviction``)."""

    api: Literal["aws", "kube"] = "aws"
    operations: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    error: FaultError = "throttle"
    rate: float = Field(default=1.0, ge=0, le=1)
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _drop_is_for_kube(self) -> FaultSpec:
        if self.api == "aws" and self.error == "drop":
            raise ValueError("error drop applies to api kube only")
        return self


class Scenario(_Strict):
    region: str = "us-east-1"
    availability_zones: list[str] = Field(
        default_factory=lambda: ["us-east-1a", "us-east-1b", "us-east-1c"], min_length=1
    )
    vpc_cidr: str = "10.0.0.0/16"
    images: Images = Field(default_factory=Images)
    timing: Timing = Field(default_factory=Timing)
    groups: list[GroupSpec] = Field(default_factory=lambda: [GroupSpec()], min_length=1)
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec)
    iam: IamSpec = Field(default_factory=IamSpec)
    faults: list[FaultSpec] = Field(default_factory=list)
    seed: int = Field(default=0, description="seed for fault sampling, so failing runs can be repeated")

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        foreign = [az for az in self.availability_zones if not az.startswith(self.region)]
        if foreign:
            raise ValueError(f"availability zones {foreign} are not in region {self.region}")
        if len(set(self.availability_zones)) != len(self.availability_zones):
            raise ValueError("availability_zones lists a zone twice")
        names = [group.name for group in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"group names must be unique, got {names}")
        return self


def load_scenario(path: Path | None) -> Scenario:
    """Read and validate a scenario file; None gives the default scenario."""
    path = path or DEFAULT_SCENARIO
    example = "configs/sandbox.yaml"
    data = load_mapping(
        path,
        kind="scenario",
        fields="scenario fields at the top level",
        option="--scenario",
        example=example,
        error=ScenarioError,
    )
    return validated(Scenario, data, path, label="field", example=example, error=ScenarioError)
