"""nodeswap's view of the world: frozen facts read from AWS and Kubernetes by the adapters.

The engine and the planner read these, never SDK objects or raw API payloads; derived facts are
properties, not stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Auto Scaling lifecycle states in which an instance counts toward the group's capacity.
SERVING_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})


@dataclass(frozen=True)
class LaunchSpec:
    """What an instance is (or a group launches) from: a launch template version or a launch configuration."""

    template_id: str | None = None
    template_name: str | None = None
    version: str | None = None  # a number; a group's "$Latest"/"$Default" is resolved by the adapter
    configuration: str | None = None

    def describe(self) -> str:
        if self.configuration:
            return f"launch configuration {self.configuration}"
        return f"launch template {self.template_name or self.template_id} version {self.version}"


@dataclass(frozen=True)
class Instance:
    id: str
    zone: str
    lifecycle_state: str
    healthy: bool
    launch: LaunchSpec | None
    launched_at: datetime | None = None
    image_id: str | None = None

    @property
    def serving(self) -> bool:
        return self.lifecycle_state in SERVING_STATES


@dataclass(frozen=True)
class LifecycleHook:
    name: str
    transition: str  # "autoscaling:EC2_INSTANCE_TERMINATING" or "...LAUNCHING"
    heartbeat_timeout: int
    default_result: str

    @property
    def terminating(self) -> bool:
        return self.transition.endswith("TERMINATING")


@dataclass(frozen=True)
class Group:
    name: str
    min_size: int
    max_size: int
    desired: int
    launch: LaunchSpec
    instances: tuple[Instance, ...]
    suspended: frozenset[str] = frozenset()
    hooks: tuple[LifecycleHook, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    busy: bool = False  # a scaling activity is in progress
    mixed: bool = False  # the launch template comes from a mixed instances policy

    def instance(self, instance_id: str) -> Instance | None:
        return next((i for i in self.instances if i.id == instance_id), None)


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class Node:
    name: str
    provider_id: str
    ready: bool
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def instance_id(self) -> str | None:
        """The EC2 instance behind the node: the last segment of ``aws:///<zone>/<instance-id>``."""
        if not self.provider_id.startswith("aws://"):
            return None
        return self.provider_id.rsplit("/", 1)[-1] or None


@dataclass(frozen=True)
class Owner:
    kind: str
    name: str


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    node: str | None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    owner: Owner | None = None
    phase: str = "Running"
    ready: bool = True
    deleting: bool = False
    empty_dir: bool = False
    mirror: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Budget:
    """A PodDisruptionBudget: its spec and the status the disruption controller keeps."""

    namespace: str
    name: str
    selector: dict[str, object] | None
    min_available: int | str | None = None
    max_unavailable: int | str | None = None
    expected_pods: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    disruptions_allowed: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
