"""What the planner says beyond "what would be replaced": whether the moved pods fit on the new nodes,
the zero-downtime audit of the workloads that move, and an estimate of how long the rollout takes.

Pure functions of the snapshot, built to stay fast on large clusters: every per-pod question is
answered from an index keyed by what pods share (a namespace and label set, a scheduling signature),
so 60,000 pods cost a few lookups each.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nodeswap.model import Blocker, Budget, Finding, Group, Node, Pod, Resources, Service, Snapshot
from nodeswap.placement import selects_node, tolerates

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
# Labels and taints that belong to one node or to its current condition, never to a new node.
PER_NODE_LABELS = ("kubernetes.io/hostname",)
TRANSIENT_TAINTS = ("node.kubernetes.io/", "nodeswap.io/", "ToBeDeletedByClusterAutoscaler", "Deletion")
# When nothing can be measured: EC2 boot plus kubelet registration on a typical EKS AMI, and a pod's
# image pull and start before its readiness probe begins.
ASSUMED_JOIN_SECONDS = 120.0
# How long Auto Scaling takes to start the launches a capacity change calls for, when the group's recent
# activities do not say: 10 to 20 s is what AWS shows.
ASSUMED_REACTION_SECONDS = 15.0
BATCH_KINDS = ("Job ", "CronJob ")
ASSUMED_POD_START_SECONDS = 10.0


def selects(selector: dict[str, object] | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector against labels. policy/v1: a nil selector selects nothing, {} everything."""
    if selector is None:
        return False
    match_labels = selector.get("matchLabels") or {}
    assert isinstance(match_labels, dict)
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    expressions = selector.get("matchExpressions") or []
    assert isinstance(expressions, list)
    for expression in expressions:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        matched = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(operator, False)
        if not matched:
            return False
    return True


class Selecting:
    """Which budgets select a set of labels, by key. Each budget is filed under one of its matchLabels
    (those without any, under its namespace alone), so a lookup checks the few budgets a pod's labels
    name, not every budget of the namespace: a workload's pods share their labels, but a StatefulSet's
    pods each have their own, and thousands of label sets meet hundreds of budgets."""

    def __init__(self, budgets: Iterable[Budget]) -> None:
        self._filed: dict[tuple[str, ...], list[tuple[int, Budget]]] = defaultdict(list)
        for position, budget in enumerate(budgets):
            match_labels = (budget.selector or {}).get("matchLabels") or {}
            assert isinstance(match_labels, dict)
            label = next(iter(match_labels.items()), ())
            self._filed[(budget.namespace, *label)].append((position, budget))
        self._found: dict[tuple[str, frozenset[tuple[str, str]]], tuple[str, ...]] = {}

    def __call__(self, namespace: str, labels: dict[str, str]) -> tuple[str, ...]:
        key = (namespace, frozenset(labels.items()))
        found = self._found.get(key)
        if found is None:
            filed = [*self._filed.get((namespace,), ())]
            for label in labels.items():
                filed += self._filed.get((namespace, *label), ())
            found = tuple(b.key for _, b in sorted(filed, key=lambda f: f[0]) if selects(b.selector, labels))
            self._found[key] = found
        return found


class Index:
    """Per-pod lookups over a snapshot, cached by what pods share."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._budgets = {b.key: b for b in snapshot.budgets}
        self._selecting = Selecting(snapshot.budgets)
        self._services: dict[str, list[Service]] = defaultdict(list)
        for service in snapshot.services:
            if service.selector:
                self._services[service.namespace].append(service)
        self._budget_cache: dict[tuple[str, frozenset[tuple[str, str]]], tuple[Budget, ...]] = {}
        self._service_cache: dict[tuple[str, frozenset[tuple[str, str]]], tuple[Service, ...]] = {}
        self._workloads: dict[str, list[Pod]] | None = None

    def budgets(self, pod: Pod) -> tuple[Budget, ...]:
        key = (pod.namespace, frozenset(pod.labels.items()))
        found = self._budget_cache.get(key)
        if found is None:
            found = tuple(self._budgets[k] for k in self._selecting(pod.namespace, pod.labels))
            self._budget_cache[key] = found
        return found

    def services(self, pod: Pod) -> tuple[Service, ...]:
        key = (pod.namespace, frozenset(pod.labels.items()))
        found = self._service_cache.get(key)
        if found is None:
            found = tuple(
                s
                for s in self._services.get(pod.namespace, ())
                if all(pod.labels.get(k) == v for k, v in s.selector.items())
            )
            self._service_cache[key] = found
        return found

    def workload(self, pod: Pod) -> str | None:
        """The pod's top controller, "Kind namespace/name" (a ReplicaSet's Deployment), if it has one."""
        if pod.owner is None:
            return None
        owner = pod.owner
        if owner.kind == "ReplicaSet":
            owner = self.snapshot.controllers.get(f"{pod.namespace}/ReplicaSet/{owner.name}", owner)
        return f"{owner.kind} {pod.namespace}/{owner.name}"

    def pods_of(self, workload: str) -> list[Pod]:
        if self._workloads is None:
            self._workloads = defaultdict(list)
            for pod in self.snapshot.pods:
                if not pod.deleting and pod.phase not in ("Succeeded", "Failed"):
                    key = self.workload(pod)
                    if key is not None:
                        self._workloads[key].append(pod)
        return self._workloads.get(workload, [])


def spare(budget: Budget) -> int:
    """How many of the budget's pods may be disrupted at once when all its pods are healthy."""
    return max(budget.expected_pods - budget.desired_healthy, 0)


# ----- will it fit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewNode:
    """What a new instance's node will look like, as far as scheduling goes."""

    instance_type: str
    allocatable: Resources
    source: str  # where the allocatable figure comes from
    labels: tuple[dict[str, str], ...]  # one label set per zone the group launches into
    taints: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class Fit:
    new_node: NewNode | None  # None: the group's instance type is unknown, nothing was checked
    daemonsets: Resources  # what DaemonSet pods take on each node
    needed: Resources  # requests of the pods to move in the largest wave
    room: Resources  # the new nodes of that wave after DaemonSets, plus free room on the nodes that stay
    unplaceable: tuple[tuple[str, str], ...]  # (pod, why): pods no new or remaining node can take

    @property
    def fits(self) -> bool | None:
        if self.new_node is None:
            return None
        return not self.unplaceable and self.needed.within(self.room)

    def as_dict(self) -> dict[str, Any]:
        node = self.new_node
        return {
            "checked": node is not None,
            "fits": self.fits,
            "instance_type": node.instance_type if node else None,
            "allocatable_per_node": node.allocatable.as_dict() if node else None,
            "allocatable_source": node.source if node else None,
            "daemonsets_per_node": self.daemonsets.as_dict(),
            "needed": self.needed.as_dict(),
            "room": self.room.as_dict(),
            "unplaceable_pods": [{"pod": pod, "reason": why} for pod, why in self.unplaceable],
        }


def eks_allocatable(capacity: Resources) -> Resources:
    """Allocatable as the EKS AMI's bootstrap reserves it: kube-reserved CPU of 6% of the first core,
    1% of the second, 0.5% of the next two and 0.25% of the rest; memory of 255 MiB + 11 MiB per pod,
    and a 100 MiB hard eviction threshold."""
    cores = capacity.cpu
    reserved_cpu = (
        0.06 * min(cores, 1)
        + 0.01 * min(max(cores - 1, 0), 1)
        + 0.005 * min(max(cores - 2, 0), 2)
        + 0.0025 * max(cores - 4, 0)
    )
    reserved_memory = (255 + 11 * capacity.pods + 100) * 2**20
    return Resources(cores - reserved_cpu, capacity.memory - reserved_memory, capacity.pods)


def new_node(
    group: Group, group_nodes: Sequence[Node], nodes: Iterable[Node], sizes: dict[str, Resources]
) -> NewNode | None:
    """The node a new instance becomes: its type's allocatable as a node of that type reports it (else
    estimated from the type's size), and the labels and taints every current node of the group shares."""
    candidates: list[tuple[str, Resources, str]] = []
    by_type = {}
    for node in nodes:
        kind = node.labels.get(INSTANCE_TYPE_LABELS[0])
        if kind and node.ready and kind not in by_type:
            by_type[kind] = node
    for kind in group.instance_types:
        if kind in by_type:
            candidates.append((kind, by_type[kind].allocatable, f"as node {by_type[kind].name} reports it"))
        elif kind in sizes:
            estimate = eks_allocatable(sizes[kind])
            candidates.append(
                (kind, estimate, "estimated from EC2's instance type size (EKS AMI reservations)")
            )
    if not candidates:
        return None
    # Several types (a mixed instances policy): the smallest, as any of them may be launched.
    kind, allocatable, source = min(candidates, key=lambda c: (c[1].cpu, c[1].memory))
    shared: dict[str, str] | None = None
    taints: list[dict[str, str]] | None = None
    for node in group_nodes:
        labels = {k: v for k, v in node.labels.items() if k not in PER_NODE_LABELS}
        shared = labels if shared is None else {k: v for k, v in shared.items() if labels.get(k) == v}
        own = [
            {"key": t.key, "value": t.value, "effect": t.effect}
            for t in node.taints
            if not t.key.startswith(TRANSIENT_TAINTS)
        ]
        taints = own if taints is None else [t for t in taints if t in own]
    base = {**(shared or {}), **dict.fromkeys(INSTANCE_TYPE_LABELS, kind)}
    zones = group.zones or tuple(sorted({i.zone for i in group.instances}))
    per_zone = tuple({**base, **dict.fromkeys(ZONE_LABELS, zone)} for zone in zones) or (base,)
    return NewNode(kind, allocatable, source, per_zone, tuple(taints or ()))


def _signature(pod: Pod) -> str:
    return json.dumps([pod.node_selector, pod.node_affinity, pod.tolerations], sort_keys=True)


def _accepts(labels: dict[str, str], taints: Iterable[dict[str, str]], name: str, pod: Pod) -> str:
    """Why a node with these labels and taints would not take the pod ("" if it would)."""
    if not selects_node(pod.node_selector, pod.node_affinity, labels, name):
        wanted = ", ".join(f"{k}={v}" for k, v in pod.node_selector.items() if labels.get(k) != v)
        return f"its nodeSelector {wanted}" if wanted else "its required node affinity"
    tolerations = list(pod.tolerations)
    for taint in taints:
        if taint["effect"] in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"taint {taint['key']}={taint['value']}:{taint['effect']}"
    return ""


def fit(
    new: NewNode | None,
    moving: Sequence[Sequence[Pod]],
    *,
    launched: Sequence[int],
    daemonsets: Resources,
    staying: Sequence[Node],
    snapshot: Snapshot,
) -> tuple[Fit, list[Blocker]]:
    """Whether each wave's moving pods fit on that wave's ``launched`` new nodes plus the free room of the
    nodes that stay; pods that fit on no node at all block the rollout (they would stay Pending)."""
    if new is None or not moving:
        return Fit(new, daemonsets, Resources(), Resources(), ()), []
    used: dict[str, Resources] = defaultdict(Resources)
    for pod in snapshot.pods:
        if pod.node is not None and pod.phase not in ("Succeeded", "Failed"):
            used[pod.node] = used[pod.node] + pod.requests
    free = {n.name: n.allocatable - used[n.name] for n in staying}
    per_node = new.allocatable - daemonsets
    refusals: dict[str, str] = {}  # scheduling signature -> why no new node takes it ("" if one does)
    unplaceable: list[tuple[str, str]] = []
    needed, room = Resources(), Resources()
    for wave, count in zip(moving, launched, strict=True):
        wave_needed = Resources()
        for pod in wave:
            wave_needed = wave_needed + pod.requests
            signature = _signature(pod)
            if signature not in refusals:
                reasons = [_accepts(labels, new.taints, "", pod) for labels in new.labels]
                refusals[signature] = "" if "" in reasons else reasons[0]
            why = refusals[signature]
            if not why and not pod.requests.within(per_node):
                short = " and ".join(pod.requests.short_of(per_node))
                why = f"requests more {short} than a new {new.instance_type} node has after DaemonSets"
            if why and not any(
                pod.requests.within(room_left) and not _accepts(node.labels, _taints(node), node.name, pod)
                for node in staying
                if (room_left := free[node.name]).pods > 0
            ):
                unplaceable.append((pod.key, f"no new node takes it ({why}) and no other node has room"))
        wave_room = per_node * count + _positive(free.values())
        if wave_needed.cpu >= needed.cpu:
            needed, room = wave_needed, wave_room
    blockers = [
        Blocker(
            "does-not-fit",
            f"pod {pod}",
            why,
            "give the new nodes what the pod needs (instance type, labels, taints in the launch template) "
            "or change the pod's requests, nodeSelector or tolerations",
        )
        for pod, why in unplaceable
    ]
    return Fit(new, daemonsets, needed, room, tuple(unplaceable)), blockers


def _taints(node: Node) -> list[dict[str, str]]:
    return [{"key": t.key, "value": t.value, "effect": t.effect} for t in node.taints]


def _positive(values: Iterable[Resources]) -> Resources:
    total = Resources()
    for value in values:
        total = total + Resources(max(value.cpu, 0.0), max(value.memory, 0.0), max(value.pods, 0))
    return total


# ----- the zero-downtime audit ---------------------------------------------------------------------


def audit(moving: Sequence[Pod], index: Index) -> list[Finding]:
    """What would cost availability while the workloads with pods on the old nodes move."""
    findings: list[Finding] = []
    by_workload: dict[str, list[Pod]] = defaultdict(list)
    for pod in moving:
        workload = index.workload(pod)
        # Batch pods serve no traffic: readiness, budgets and preStop delays are not their concern.
        if workload is not None and not workload.startswith(BATCH_KINDS):
            by_workload[workload].append(pod)
    for workload, pods in sorted(by_workload.items()):
        findings += _workload_findings(workload, pods, index)
    return findings


def _workload_findings(workload: str, pods: list[Pod], index: Index) -> list[Finding]:
    findings = []
    if any(not p.readiness_probe for p in pods):
        findings.append(
            Finding(
                "no-readiness-probe",
                workload,
                "its pods have no readiness probe: a replacement gets traffic before it can serve it",
                "add a readinessProbe to the serving container",
            )
        )
    if len(index.pods_of(workload)) == 1:
        findings.append(
            Finding(
                "single-replica",
                workload,
                "runs a single replica: it is down from its eviction until its replacement is Ready",
                "run at least 2 replicas, with a PodDisruptionBudget",
            )
        )
    if not any(index.budgets(p) for p in pods):
        findings.append(
            Finding(
                "no-pdb",
                workload,
                "no PodDisruptionBudget: every pod of it on a draining node may be evicted at once",
                "add a PodDisruptionBudget (for example maxUnavailable: 1)",
            )
        )
    behind = sorted({s.name for p in pods for s in index.services(p)})
    if behind and any(not p.pre_stop for p in pods):
        findings.append(
            Finding(
                "no-prestop",
                workload,
                f"behind Service {', '.join(behind)} but no preStop delay: requests routed to a stopping "
                "pod fail until the endpoints update",
                "add a preStop hook that waits a few seconds (lifecycle.preStop.sleep.seconds: 5)",
            )
        )
    short = next((p for p in pods if p.pre_stop_seconds and p.grace_seconds <= p.pre_stop_seconds), None)
    if short is not None:
        findings.append(
            Finding(
                "grace-not-above-prestop",
                workload,
                f"terminationGracePeriodSeconds {short.grace_seconds} is not longer than its preStop delay "
                f"of {short.pre_stop_seconds:g}s: the container is killed before it can stop cleanly",
                f"set terminationGracePeriodSeconds above {short.pre_stop_seconds:g} plus the shutdown time",
            )
        )
    return findings


def serializing(
    moving: Sequence[Pod], old_nodes: set[str], index: Index, slowest: Pace | None
) -> list[Finding]:
    """Budgets that serialize the drain: one pod at a time over several old nodes, or the budget whose
    rounds set the rollout's length (the estimate's critical path)."""
    pods_of: dict[str, list[Pod]] = defaultdict(list)
    budget_of: dict[str, Budget] = {}
    for pod in moving:
        for budget in index.budgets(pod):
            pods_of[budget.key].append(pod)
            budget_of[budget.key] = budget
    findings = []
    for key, pods in sorted(pods_of.items()):
        allowed = spare(budget_of[key])
        nodes = {p.node for p in pods if p.node in old_nodes}
        rounds = math.ceil(len(pods) / allowed) if allowed else 0
        critical = slowest is not None and slowest.budget == key and rounds > 1
        assert slowest is not None or not critical
        if (allowed == 1 and len(nodes) > 1) or critical:
            paced = (
                f", about {slowest.seconds:.0f} s: the longest part of the rollout"
                if critical and slowest
                else ""
            )
            findings.append(
                Finding(
                    "pdb-serializes-drain",
                    f"PodDisruptionBudget {key}",
                    f"lets {allowed} of its pods go at a time: its {len(pods)} pods on {len(nodes)} old "
                    f"nodes move in {rounds} rounds, one after the other{paced}",
                    "allow more disruptions (maxUnavailable, or a lower minAvailable) if the workload can "
                    "spare the pods",
                )
            )
    return findings


# ----- the estimate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    """One budget's share of a wave's drain: its pods go ``allowed`` at a time."""

    budget: str
    pods: int
    allowed: int
    rounds: int
    round_seconds: float

    @property
    def seconds(self) -> float:
        return self.rounds * self.round_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "pods": self.pods,
            "allowed": self.allowed,
            "rounds": self.rounds,
            "round_seconds": round(self.round_seconds, 1),
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class Estimate:
    seconds: float
    join_seconds: float  # launch to a Ready node, per wave
    drain_seconds: float  # all waves' drains
    waves: int
    critical_path: str
    paces: tuple[Pace, ...]  # the slowest wave's budgets, slowest first
    assumptions: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "join_seconds_per_wave": round(self.join_seconds, 1),
            "drain_seconds": round(self.drain_seconds, 1),
            "waves": self.waves,
            "critical_path": self.critical_path,
            "budgets": [p.as_dict() for p in self.paces],
            "assumptions": list(self.assumptions),
        }


def _median(values: Iterable[float]) -> float | None:
    kept = [v for v in values if v >= 0]
    return statistics.median(kept) if kept else None


def _seconds(start: datetime | None, end: datetime | None) -> float:
    return (end - start).total_seconds() if start and end else -1.0


def _join_per_wave(group: Group, group_nodes: dict[str, Node]) -> tuple[float, list[str]]:
    """How long a wave's new nodes take to be Ready after its capacity change: Auto Scaling's reaction,
    then launch to a registered node, then to Ready, each as the group's recent ones took where it can
    be measured; and what was assumed."""
    assumptions = []
    launched = {i.id: i.launched_at for i in group.instances}
    join = _median(_seconds(launched.get(i), n.created_at) for i, n in group_nodes.items())
    ready = _median(_seconds(n.created_at, n.ready_since) for n in group_nodes.values())
    if join is None:
        join = ASSUMED_JOIN_SECONDS
        assumptions.append(f"new instances join in {join:.0f} s (no instance of the group to measure)")
    else:
        assumptions.append(f"new instances join as the group's current ones did (median {join:.0f} s)")
    reaction = group.reaction_seconds
    if reaction is None:
        reaction = ASSUMED_REACTION_SECONDS
        assumptions.append(
            f"Auto Scaling starts a wave's launches {reaction:.0f} s after the capacity change (no recent "
            "launch of the group to measure)"
        )
    else:
        assumptions.append(
            "Auto Scaling starts a wave's launches as soon after the capacity change as it started the "
            f"group's recent ones (median {reaction:.0f} s)"
        )
    return reaction + join + (ready or 0.0), assumptions


def estimate(
    group: Group, group_nodes: dict[str, Node], moving: Sequence[Sequence[Pod]], index: Index
) -> Estimate:
    """The rollout's duration: per wave, Auto Scaling starts the launches, new instances boot, join and
    become Ready (as the group's recent ones did), then each budget moves its pods ``allowed`` at a
    time, each round waiting for the replacements to be Ready (as the workload's current pods took); a
    node goes once its last pod has stopped."""
    join, assumptions = _join_per_wave(group, group_nodes)
    start_cache: dict[str, float] = {}

    def start(pod: Pod) -> float:
        """Eviction to a Ready replacement, as long as the workload's current pods took to be Ready."""
        workload = index.workload(pod) or pod.key
        if workload not in start_cache:
            measured = _median(_seconds(p.created_at, p.ready_since) for p in index.pods_of(workload))
            start_cache[workload] = (
                measured if measured is not None else ASSUMED_POD_START_SECONDS + pod.readiness_delay
            )
        return start_cache[workload]

    drain, slowest_wave = 0.0, -1.0
    paces_of_slowest: tuple[Pace, ...] = ()
    for wave in moving:
        paces: dict[str, Pace] = {}
        by_budget: dict[str, list[Pod]] = defaultdict(list)
        allowed: dict[str, int] = {}
        stop = 0.0  # the longest a moving pod takes to stop: a node goes after its last pod
        for pod in wave:
            stop = max(stop, min(pod.pre_stop_seconds, pod.grace_seconds))
            budgets = index.budgets(pod)
            if budgets:
                by_budget[budgets[0].key].append(pod)
                allowed[budgets[0].key] = max(spare(budgets[0]), 1)
        for key, pods in by_budget.items():
            # A StatefulSet's replacement has its predecessor's name: it starts once that one stopped.
            per_round = max(
                start(p) + (min(p.pre_stop_seconds, p.grace_seconds) if _stateful(p) else 0.0) for p in pods
            )
            paces[key] = Pace(key, len(pods), allowed[key], math.ceil(len(pods) / allowed[key]), per_round)
        ordered = tuple(sorted(paces.values(), key=lambda p: -p.seconds))
        wave_drain = max([stop, *(p.seconds for p in ordered)])
        drain += wave_drain
        if wave_drain > slowest_wave:
            slowest_wave, paces_of_slowest = wave_drain, ordered
    waves = max(len(moving), 1)
    # The path is sequential, per wave: new nodes first, then the slowest budget (or the last pod to stop).
    critical = f"new nodes Ready in {join:.0f} s, then "
    if paces_of_slowest:
        top = paces_of_slowest[0]
        critical += (
            f"PodDisruptionBudget {top.budget}: {top.pods} pods, {top.allowed} at a time, "
            f"{top.rounds} rounds of {top.round_seconds:.0f} s"
        )
    else:
        critical += f"the old nodes' pods stop within {slowest_wave:.0f} s"
    if waves > 1:
        critical += f" (slowest of {waves} waves)"
    assumptions += [
        "replacement pods become Ready as fast as the workload's current pods did "
        f"(or {ASSUMED_POD_START_SECONDS:.0f} s plus the readiness delay where none can be measured)",
        "a pod stops when its preStop delay ends (bounded by its grace period)",
        "API calls add a few seconds per wave",
    ]
    return Estimate(join * waves + drain, join, drain, waves, critical, paces_of_slowest, tuple(assumptions))


def _stateful(pod: Pod) -> bool:
    return pod.owner is not None and pod.owner.kind == "StatefulSet"
