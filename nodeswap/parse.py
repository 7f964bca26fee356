"""The Kubernetes API's JSON as nodeswap's records: nodes, pods, PodDisruptionBudgets, Services and the
controllers of ReplicaSets, from list bodies and watch lines as the API server sends them (bytes).

Each kind is decoded by msgspec into Structs that declare only the fields nodeswap reads: the rest of
an object (managedFields, container statuses, images, environment) is skipped while decoding, in C, and
never becomes Python objects. A 60,000-pod list (half a gigabyte) decodes this way in an eighth of the
time ``json.loads`` takes, and is records in less than a third of it. Fields the API server may leave
out have defaults; lists, maps and nested objects are also optional, read as empty when null (as an
object may have them that kube-apiserver did not encode itself, e.g. the sandbox's).
"""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar

import msgspec
from kubernetes.client.exceptions import ApiException
from msgspec import UNSET, Struct, UnsetType

from nodeswap.model import Budget, Node, Owner, Pod, Resources, Service, Snapshot, Taint
from nodeswap.placement import quantity
from nodeswap.plan import DO_NOT_DISRUPT

Kind = Literal["nodes", "pods", "budgets"]  # what the cache lists and watches
Record = Node | Pod | Budget
Quantity = str | int | float  # a resource.Quantity: a string from the API server, a number from others
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")

# A mirror pod (a static pod's copy in the API server) carries this annotation.
MIRROR = "kubernetes.io/config.mirror"


# ----- the fields nodeswap reads -------------------------------------------------------------------
# gc=False: decoded JSON has no reference cycles, so the collector need not track these Structs.


class _ListMeta(Struct, rename="camel", gc=False):
    resource_version: str


class _List(Struct, Generic[T], gc=False):
    metadata: _ListMeta
    items: list[T]


class _Event(Struct, gc=False):
    """A watch line; its object is decoded once the type says what it is."""

    type: str
    object: msgspec.Raw


class _Bookmark(Struct, gc=False):
    metadata: _ListMeta


class _Status(Struct, gc=False):
    """The metav1.Status of a watch's ERROR event."""

    code: int | None = None
    message: str | None = None


class _OwnerReference(Struct, gc=False):
    kind: str
    name: str
    controller: bool | None = None


class _Condition(Struct, rename="camel", gc=False):
    type: str | None = None
    status: str | None = None
    last_transition_time: datetime | None = None


class _Taint(Struct, rename="camel", gc=False):
    key: str
    effect: str
    value: str | None = None
    time_added: str | None = None  # kept as read: written back with the taints


class _NodeMeta(Struct, rename="camel", gc=False):
    name: str
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    creation_timestamp: datetime | None = None
    resource_version: str | None = None


class _NodeSpec(Struct, rename={"provider_id": "providerID"}, gc=False):
    provider_id: str | None = None
    unschedulable: bool | None = None
    taints: list[_Taint] | None = None


class _Allocatable(Struct, gc=False):
    cpu: Quantity = 0
    memory: Quantity = 0
    pods: Quantity = 110


class _NodeStatus(Struct, gc=False):
    conditions: list[_Condition] | None = None
    allocatable: _Allocatable | None = None


class _RawNode(Struct, gc=False):
    metadata: _NodeMeta
    spec: _NodeSpec | None = None
    status: _NodeStatus | None = None


# The annotations a pod's record keeps (the planner's DO_NOT_DISRUPT) and a mirror pod's mark: only
# these are decoded, as a pod's others can be large (kubectl's last-applied-configuration).
_POD_ANNOTATIONS = (*DO_NOT_DISRUPT, MIRROR)
_PodAnnotations = msgspec.defstruct(
    "_PodAnnotations",
    [(f"a{i}", str | None, None) for i in range(len(_POD_ANNOTATIONS))],
    rename={f"a{i}": key for i, key in enumerate(_POD_ANNOTATIONS)},
    gc=False,
)


class _PodMeta(Struct, rename="camel", gc=False):
    namespace: str
    name: str
    uid: str
    labels: dict[str, str] | None = None
    annotations: _PodAnnotations | None = None  # type: ignore[valid-type]  # built from DO_NOT_DISRUPT
    owner_references: list[_OwnerReference] | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: str | None = None
    resource_version: str | None = None


class _Requests(Struct, gc=False):
    cpu: Quantity = 0.0
    memory: Quantity = 0.0


class _ContainerResources(Struct, gc=False):
    requests: _Requests | None = None


class _Probe(Struct, rename="camel", gc=False):
    initial_delay_seconds: float = 0.0


class _SleepAction(Struct, gc=False):
    seconds: float = 0.0


class _ExecAction(Struct, gc=False):
    command: list[str] | None = None


class _Hook(Struct, gc=False):
    sleep: _SleepAction | None = None
    exec: _ExecAction | None = None


class _Lifecycle(Struct, rename="camel", gc=False):
    pre_stop: _Hook | None = None


class _Container(Struct, rename="camel", gc=False):
    resources: _ContainerResources | None = None
    readiness_probe: _Probe | None = None
    lifecycle: _Lifecycle | None = None


class _Anything(Struct, gc=False):
    """An object whose fields nodeswap does not read, only whether it is there."""


class _Volume(Struct, rename="camel", gc=False):
    empty_dir: _Anything | UnsetType | None = UNSET  # its presence is what counts, even as null


class _NodeAffinity(Struct, rename="camel", gc=False):
    required_during_scheduling_ignored_during_execution: dict[str, Any] | None = None


class _Affinity(Struct, rename="camel", gc=False):
    node_affinity: _NodeAffinity | None = None


class _PodSpec(Struct, rename="camel", gc=False):
    node_name: str | None = None
    containers: list[_Container] | None = None
    init_containers: list[_Container] | None = None
    volumes: list[_Volume] | None = None
    node_selector: dict[str, str] | None = None
    affinity: _Affinity | None = None
    tolerations: list[dict[str, Any]] | None = None
    termination_grace_period_seconds: int = 30


class _PodStatus(Struct, gc=False):
    phase: str = "Pending"
    conditions: list[_Condition] | None = None


class _RawPod(Struct, gc=False):
    metadata: _PodMeta
    spec: _PodSpec | None = None
    status: _PodStatus | None = None


class _Meta(Struct, rename="camel", gc=False):
    namespace: str
    name: str
    owner_references: list[_OwnerReference] | None = None
    resource_version: str | None = None


class _BudgetSpec(Struct, rename="camel", gc=False):
    selector: dict[str, Any] | None = None
    min_available: int | str | None = None
    max_unavailable: int | str | None = None


class _BudgetStatus(Struct, rename="camel", gc=False):
    expected_pods: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    disruptions_allowed: int = 0


class _RawBudget(Struct, gc=False):
    metadata: _Meta
    spec: _BudgetSpec | None = None
    status: _BudgetStatus | None = None


class _ServiceSpec(Struct, gc=False):
    selector: dict[str, str] | None = None


class _RawService(Struct, gc=False):
    metadata: _Meta
    spec: _ServiceSpec | None = None


class _RawReplicaSet(Struct, gc=False):
    metadata: _Meta


# ----- records -------------------------------------------------------------------------------------


def _node(raw: _RawNode) -> Node:
    meta, spec, status = raw.metadata, raw.spec or _NodeSpec(), raw.status or _NodeStatus()
    ready = _ready(status.conditions)
    allocatable = status.allocatable or _Allocatable()
    return Node(
        name=meta.name,
        provider_id=spec.provider_id or "",
        ready=ready is not None,
        unschedulable=bool(spec.unschedulable),
        taints=tuple(Taint(t.key, t.effect, t.value or "", t.time_added) for t in spec.taints or ()),
        labels=meta.labels or {},
        annotations=meta.annotations or {},
        allocatable=Resources(
            quantity(allocatable.cpu), quantity(allocatable.memory), int(quantity(allocatable.pods))
        ),
        created_at=meta.creation_timestamp,
        ready_since=ready.last_transition_time if ready is not None else None,
        resource_version=meta.resource_version or "",
    )


def _pod(raw: _RawPod) -> Pod:
    meta, spec, status = raw.metadata, raw.spec or _PodSpec(), raw.status or _PodStatus()
    ready = _ready(status.conditions)
    containers = spec.containers or ()
    probes, hooks = [], []
    for container in containers:
        if container.readiness_probe is not None:
            probes.append(container.readiness_probe)
        if container.lifecycle is not None and container.lifecycle.pre_stop is not None:
            hooks.append(container.lifecycle.pre_stop)
    cpu, memory = _requests(containers, spec.init_containers or ())
    annotations = _annotations(meta.annotations)
    affinity = spec.affinity.node_affinity if spec.affinity else None
    return Pod(
        namespace=meta.namespace,
        name=meta.name,
        uid=meta.uid,
        node=spec.node_name,
        labels=meta.labels or {},
        annotations={k: annotations[k] for k in DO_NOT_DISRUPT if k in annotations},
        owner=_controller(meta.owner_references),
        phase=status.phase,
        ready=ready is not None,
        deleting=meta.deletion_timestamp is not None,
        empty_dir=any(v.empty_dir is not UNSET for v in spec.volumes or ()),
        mirror=MIRROR in annotations,
        requests=Resources(cpu, memory, 1),
        node_selector=spec.node_selector or {},
        node_affinity=affinity.required_during_scheduling_ignored_during_execution if affinity else None,
        tolerations=tuple(spec.tolerations or ()),
        readiness_probe=bool(probes),
        readiness_delay=max((p.initial_delay_seconds for p in probes), default=0.0),
        pre_stop=bool(hooks),
        pre_stop_seconds=max(map(_pause, hooks), default=0.0),
        grace_seconds=spec.termination_grace_period_seconds,
        created_at=meta.creation_timestamp,
        ready_since=ready.last_transition_time if ready is not None else None,
    )


def _ready(conditions: list[_Condition] | None) -> _Condition | None:
    """The Ready condition, if it is True."""
    for condition in conditions or ():
        if condition.type == "Ready":
            return condition if condition.status == "True" else None
    return None


def _controller(references: list[_OwnerReference] | None) -> Owner | None:
    for reference in references or ():
        if reference.controller:
            return Owner(reference.kind, reference.name)
    return None


def _annotations(read: Any) -> dict[str, str]:
    """The pod annotations that were decoded (_POD_ANNOTATIONS), those it has."""
    if read is None:
        return {}
    values = msgspec.structs.astuple(read)
    return {k: v for k, v in zip(_POD_ANNOTATIONS, values, strict=True) if v is not None}


def _requests(containers: Sequence[_Container], init: Sequence[_Container]) -> tuple[float, float]:
    """(CPU cores, memory bytes), as placement.requests reads a pod spec: the containers' sum, or the
    largest init container's if that is more."""
    cpu, memory = _total(containers)
    for container in init:
        init_cpu, init_memory = _total((container,))
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    return cpu, memory


def _total(containers: Sequence[_Container]) -> tuple[float, float]:
    asked = [(c.resources.requests if c.resources else None) or _Requests() for c in containers]
    # sum(), as placement.requests adds them: the same floats in the same order give the same total.
    return sum(quantity(r.cpu) for r in asked), sum(quantity(r.memory) for r in asked)


_SLEEP = re.compile(r"\bsleep\s+([0-9.]+)")


def _pause(hook: _Hook) -> float:
    """How long a preStop hook waits, where it says: the sleep action, or a `sleep N` it executes."""
    if hook.sleep is not None:
        return hook.sleep.seconds
    found = _SLEEP.search(" ".join((hook.exec.command if hook.exec else None) or ()))
    return float(found.group(1)) if found else 0.0


def _budget(raw: _RawBudget) -> Budget:
    meta, spec, status = raw.metadata, raw.spec or _BudgetSpec(), raw.status or _BudgetStatus()
    return Budget(
        namespace=meta.namespace,
        name=meta.name,
        selector=spec.selector,
        min_available=spec.min_available,
        max_unavailable=spec.max_unavailable,
        expected_pods=status.expected_pods,
        current_healthy=status.current_healthy,
        desired_healthy=status.desired_healthy,
        disruptions_allowed=status.disruptions_allowed,
    )


def _service(raw: _RawService) -> Service:
    meta = raw.metadata
    return Service(meta.namespace, meta.name, (raw.spec.selector if raw.spec else None) or {})


def _replicaset(raw: _RawReplicaSet) -> tuple[str, Owner | None]:
    """A ReplicaSet's key as the audit looks it up ("namespace/ReplicaSet/name") and its controller."""
    meta = raw.metadata
    return f"{meta.namespace}/ReplicaSet/{meta.name}", _controller(meta.owner_references)


# ----- decoding ------------------------------------------------------------------------------------


class _Version(Protocol):
    @property
    def resource_version(self) -> str | None: ...


class _Versioned(Protocol):
    @property
    def metadata(self) -> _Version: ...


V = TypeVar("V", bound=_Versioned)
_EVENT = msgspec.json.Decoder(_Event)
_BOOKMARK = msgspec.json.Decoder(_Bookmark)
_STATUS = msgspec.json.Decoder(_Status)


class Format(Generic[V, R_co]):
    """How one kind is read: the shape of its objects (the fields nodeswap reads) and its record.
    Malformed JSON, or a field of another type, raises msgspec.DecodeError (a ValueError)."""

    def __init__(self, shape: type[V], record: Callable[[V], R_co]) -> None:
        self._list = msgspec.json.Decoder(_List[shape])  # type: ignore[valid-type]
        self._object = msgspec.json.Decoder(shape)
        self._record = record

    def listed(self, body: bytes) -> tuple[list[R_co], str]:
        """A list response's records, and the list's resourceVersion (to watch from)."""
        listed = self._list.decode(body)
        return [self._record(o) for o in listed.items], listed.metadata.resource_version

    def one(self, body: bytes) -> R_co:
        """The record of a single object (a read's response)."""
        return self._record(self._object.decode(body))

    def event(self, line: bytes) -> tuple[str, R_co | None, str]:
        """One watch line: the event's type (ADDED, MODIFIED, DELETED, BOOKMARK), its record (None for a
        BOOKMARK, which carries only a newer version) and the resourceVersion to resume from. An ERROR
        event (a version too old to resume from: 410) is raised as the ApiException of its Status."""
        event = _EVENT.decode(line)
        if event.type == "ERROR":
            status = _STATUS.decode(event.object)
            raise ApiException(status=status.code, reason=status.message)
        if event.type == "BOOKMARK":
            return event.type, None, _BOOKMARK.decode(event.object).metadata.resource_version
        raw = self._object.decode(event.object)
        return event.type, self._record(raw), raw.metadata.resource_version or ""


NODES = Format(_RawNode, _node)
PODS = Format(_RawPod, _pod)
BUDGETS = Format(_RawBudget, _budget)
SERVICES = Format(_RawService, _service)
REPLICASETS = Format(_RawReplicaSet, _replicaset)
FORMATS: dict[Kind, Format[Any, Record]] = {"nodes": NODES, "pods": PODS, "budgets": BUDGETS}


class _Paused:
    """``with paused:`` the cyclic garbage collector does not run: around the parsing of a list body.

    Parsing a large list allocates hundreds of thousands of objects that all survive (the records, and
    until they are built the decoded Structs' dicts and lists), and each of the collector's passes walks
    every one of them again while finding no garbage: without the pause that is half the parsing time
    of 60,000 pods (with ``json.loads``, most of it). The parsing of several threads (the cache's
    watches relisting) may overlap: the collector resumes when the last one ends, and only if it was
    running before the first began."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._resume:
                gc.enable()


paused = _Paused()


def kept(snapshot: Snapshot) -> Snapshot:
    """The snapshot, with every object the process holds now moved out of the cyclic garbage collector's
    reach (``gc.freeze``), the snapshot's records among them.

    A command keeps its snapshot to the end (the plan, a rollout's first plan), and planning allocates
    enough to set off the collector's full passes, each of which would walk the records again (60,000
    pods: a quarter of a million objects, a fifth of the plan's time). Frozen objects are still freed
    when no longer referenced, and records have no reference cycles, so a record replaced later goes as
    before. What freezing costs is the cyclic garbage of the moment, and that of objects alive now that
    form cycles later: never collected. For a CLI process, which ends with its command, that is a
    bounded amount."""
    gc.freeze()
    return snapshot
