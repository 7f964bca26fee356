"""nodeswap's view of the world: frozen facts read from AWS and Kubernetes by the adapters.

The engine and the planner read these, never SDK objects or raw API payloads; derived facts are
properties, not stored twice. Findings are what the planner concludes about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
    instance_type: str | None = None

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
    # The launch template version as the group names it ("$Latest", "$Default" or the number that
    # ``launch`` resolves), None for a launch configuration.
    launch_asked: str | None = None
    suspended: frozenset[str] = frozenset()
    hooks: tuple[LifecycleHook, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    busy: bool = False  # a scaling activity is in progress
    # How long Auto Scaling took to start its recent launches after the capacity change (None: unknown).
    reaction_seconds: float | None = None
    mixed: bool = False  # the launch template comes from a mixed instances policy
    zones: tuple[str, ...] = ()
    # The instance types new instances get (several for a mixed instances policy); filled in with the
    # instances' launch times and images, empty when unknown.
    instance_types: tuple[str, ...] = ()

    def instance(self, instance_id: str) -> Instance | None:
        return next((i for i in self.instances if i.id == instance_id), None)


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""
    time_added: str | None = None  # set on NoExecute taints; written back as read

    def as_dict(self) -> dict[str, str]:
        written = {"key": self.key, "effect": self.effect, "value": self.value, "timeAdded": self.time_added}
        return {k: v for k, v in written.items() if v}


@dataclass(frozen=True)
class Resources:
    cpu: float = 0.0  # cores
    memory: float = 0.0  # bytes
    pods: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.memory + other.memory, self.pods + other.pods)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.memory - other.memory, self.pods - other.pods)

    def __mul__(self, times: int) -> Resources:
        return Resources(self.cpu * times, self.memory * times, self.pods * times)

    def within(self, room: Resources) -> bool:
        return self.cpu <= room.cpu + 1e-9 and self.memory <= room.memory and self.pods <= room.pods

    def short_of(self, room: Resources) -> list[str]:
        """What exceeds ``room``, as "cpu", "memory", "pods"."""
        pairs = (("cpu", self.cpu, room.cpu + 1e-9), ("memory", self.memory, room.memory))
        return [name for name, need, have in (*pairs, ("pods", self.pods, room.pods)) if need > have]

    def describe(self) -> str:
        return f"{self.cpu:.2f} CPU, {self.memory / 2**30:.1f} GiB, {self.pods} pods"

    def as_dict(self) -> dict[str, float]:
        return {"cpu": round(self.cpu, 3), "memory_bytes": round(self.memory), "pods": self.pods}


@dataclass(frozen=True)
class Node:
    name: str
    provider_id: str
    ready: bool
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    allocatable: Resources = Resources()
    created_at: datetime | None = None
    ready_since: datetime | None = None  # when its Ready condition last turned True
    # Changes with every status heartbeat, so it does not count in comparisons: a node whose facts are
    # the same is the same. Written back as a precondition (optimistic concurrency).
    resource_version: str = field(default="", compare=False)

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
    requests: Resources = Resources(pods=1)
    node_selector: dict[str, str] = field(default_factory=dict)
    node_affinity: dict[str, Any] | None = None  # requiredDuringSchedulingIgnoredDuringExecution
    tolerations: tuple[dict[str, Any], ...] = ()
    readiness_probe: bool = False  # some container has one
    readiness_delay: float = 0.0  # the longest initialDelaySeconds of the readiness probes
    pre_stop: bool = False  # some container has a preStop hook
    pre_stop_seconds: float = 0.0  # how long the preStop hooks wait, where that can be read (a sleep)
    grace_seconds: int = 30  # terminationGracePeriodSeconds
    created_at: datetime | None = None
    ready_since: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: dict[str, str]  # empty: the Service has no selector (its endpoints are managed by hand)


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


@dataclass(frozen=True)
class Snapshot:
    """What the planner reads from the cluster, in one consistent pass."""

    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()
    budgets: tuple[Budget, ...] = ()
    services: tuple[Service, ...] = ()
    controllers: dict[str, Owner] = field(default_factory=dict)  # "ns/ReplicaSet/name" -> its controller


@dataclass(frozen=True)
class Finding:
    """Something the planner found about an object, and what the user can do about it. ``check`` is a
    stable identifier (for --output json and the README)."""

    check: str
    subject: str
    cause: str
    remedy: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "subject": self.subject, "cause": self.cause, "remedy": self.remedy}


@dataclass(frozen=True)
class Blocker(Finding):
    """A finding that stops the rollout before it starts."""

    # "workload" blockers (pods, budgets) hold on every run; "group" ones describe the group before a
    # rollout and are expected mid-rollout (instances launching, MaxSize raised), so a resumed run skips them.
    scope: str = "group"
