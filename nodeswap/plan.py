"""Deciding, without acting: which instances a rollout replaces, what happens to each pod on them,
and what would stop the rollout before it starts.

Pure functions of a snapshot (the group, its nodes, the pods and PDBs) and the settings. The preflight
of `replace` and the `plan` command print the same decision; the engine acts on it and re-reads the
world before every irreversible step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from nodeswap.audit import Estimate, Fit, Index, audit, estimate, fit, new_node, selects, serializing, spare
from nodeswap.model import Blocker, Budget, Finding, Group, Instance, Node, Pod, Resources, Snapshot

# Pods carrying one of these annotations ask not to be evicted (cluster-autoscaler and Karpenter).
DO_NOT_DISRUPT = {
    "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
    "karpenter.sh/do-not-disrupt": "true",
}


class Action(Enum):
    EVICT = "evict"
    SKIP = "skip"  # left on the node: it goes with the node (DaemonSet and mirror pods)
    BLOCK = "block"  # nothing can move it without a change by the user


@dataclass(frozen=True)
class Settings:
    """What to replace and how to treat pods, as `replace` and `plan` take them."""

    replace_all: bool = False
    older_than: timedelta | None = None
    # --all/--older-than: once a rollout has started, the launch time of the newest instance it set out
    # to replace, so the instances it launches are never themselves replaced by it.
    launched_before: datetime | None = None
    image: str | None = None  # --ami: instances running another image are outdated
    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = False
    force: bool = False
    may_raise_max_size: bool = True


@dataclass(frozen=True)
class PodDecision:
    pod: Pod
    action: Action
    reason: str = ""
    check: str = ""  # for a blocked pod, the blocker's stable identifier
    remedy: str = ""  # for a blocked pod, how to unblock it


@dataclass(frozen=True)
class GroupPlan:
    group: Group
    outdated: tuple[Instance, ...]
    reasons: dict[str, str]  # instance id -> why it is replaced
    nodes: dict[str, Node]  # instance id -> its node, for the outdated instances that have one
    decisions: tuple[PodDecision, ...]
    blockers: tuple[Blocker, ...] = field(default=())
    warnings: tuple[Finding, ...] = field(default=())
    waves: tuple[tuple[str, ...], ...] = field(default=())  # instance ids, in the order they are replaced
    fit: Fit | None = None
    estimate: Estimate | None = None
    recorded_desired: int | None = None  # an interrupted rollout's desired capacity, as it recorded it

    @property
    def surge(self) -> int:
        """Instances added at once: the largest wave."""
        return max((len(wave) for wave in self.waves), default=0)

    @property
    def desired_before(self) -> int:
        """The desired capacity each wave adds to: the group's, or the one an interrupted rollout
        recorded (the group's own may be surged already)."""
        return self.group.desired if self.recorded_desired is None else self.recorded_desired

    @property
    def max_size_needed(self) -> int:
        return self.desired_before + self.surge

    @property
    def evictions(self) -> tuple[Pod, ...]:
        return tuple(d.pod for d in self.decisions if d.action is Action.EVICT)


def surge_change(before: int, now: int, surge: int) -> str:
    """What surging does to the desired capacity, said from where the rollout starts or started."""
    change = f"desired {before} -> {before + surge}"
    return change if now == before else f"{change}; it is {now} now, as the interrupted rollout left it"


def outdated(group: Group, settings: Settings, now: datetime, *, leaving: bool = False) -> dict[str, str]:
    """The serving instances to replace, each with the reason; with ``leaving``, the outdated instances
    already on their way out instead (an interrupted run may have left them waiting on a hook)."""
    reasons: dict[str, str] = {}
    for instance in group.instances:
        if instance.serving == leaving:
            continue
        if settings.replace_all or settings.older_than is not None:
            launched = instance.launched_at
            if settings.launched_before is not None:
                due = launched is not None and launched <= settings.launched_before
            else:
                due = launched is not None and (
                    settings.older_than is None or now - launched > settings.older_than
                )
            if due and launched is not None:
                if settings.replace_all:
                    reasons[instance.id] = "--all replaces every instance launched before the rollout"
                elif settings.launched_before is not None:  # a recorded rollout's cutoff, not its age
                    reasons[instance.id] = (
                        f"launched {age(now - launched)} ago: one the interrupted rollout set out to replace"
                    )
                else:
                    older = age(settings.older_than or timedelta())
                    reasons[instance.id] = f"launched {age(now - launched)} ago, older than {older}"
        elif settings.image is not None:
            if instance.image_id != settings.image:
                reasons[instance.id] = (
                    f"runs {instance.image_id or 'an unknown image'}, rolling out {settings.image}"
                )
        elif instance.launch != group.launch:
            was = instance.launch.describe() if instance.launch else "an unknown launch spec"
            reasons[instance.id] = f"launched from {was}; the group uses {group.launch.describe()}"
    return reasons


def age(span: timedelta) -> str:
    """A span as kubectl shows ages (apimachinery's HumanDuration): 45s, 3m20s, 2h15m, 3d4h, 12d."""
    seconds = max(int(span.total_seconds()), 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def decide(pod: Pod, settings: Settings) -> PodDecision:
    """What draining does with one pod; a blocked pod also says the flag or change that unblocks it."""
    if pod.mirror:
        return PodDecision(pod, Action.SKIP, "mirror pod: the kubelet manages it")
    if pod.owner is not None and pod.owner.kind == "DaemonSet":
        if settings.ignore_daemonsets:
            return PodDecision(pod, Action.SKIP, "DaemonSet-managed: goes with its node")
        return PodDecision(
            pod,
            Action.BLOCK,
            "managed by a DaemonSet: evicted, its controller puts it straight back",
            "daemonset",
            "pass --ignore-daemonsets to leave it with its node",
        )
    if pod.phase in ("Succeeded", "Failed") or pod.deleting:
        return PodDecision(pod, Action.EVICT, "finished or already terminating")
    for key, value in DO_NOT_DISRUPT.items():
        if pod.annotations.get(key) == value:
            return PodDecision(
                pod,
                Action.BLOCK,
                f"annotated {key}={value}: its owner asked that it not be disrupted",
                "do-not-disrupt",
                "remove the annotation once the pod may move",
            )
    if pod.owner is None and not settings.force:
        return PodDecision(
            pod,
            Action.BLOCK,
            "declares no controller: once evicted, nothing recreates it",
            "no-controller",
            "run it under a Deployment or StatefulSet, or use --force to delete it anyway",
        )
    if pod.empty_dir and not settings.delete_emptydir_data:
        return PodDecision(
            pod,
            Action.BLOCK,
            "uses an emptyDir volume: its data is lost when it is evicted",
            "emptydir",
            "use --delete-emptydir-data if that data can be lost",
        )
    return PodDecision(pod, Action.EVICT)


def budgets_of(pod: Pod, budgets: Iterable[Budget]) -> list[Budget]:
    return [b for b in budgets if b.namespace == pod.namespace and selects(b.selector, pod.labels)]


def waves(
    ids: Iterable[str], first: set[str], surge: int | str | None, desired: int, canary: int | None = None
) -> list[list[str]]:
    """The outdated instances in waves of ``surge`` (N, or "P%" of desired; None: one wave), those in
    ``first`` (fenced by an interrupted run) first, then by id; with ``canary``, a first wave of that
    many instances before the rest."""
    ordered = sorted(ids, key=lambda instance: (instance not in first, instance))
    head, ordered = (ordered[:canary], ordered[canary:]) if canary else ([], ordered)
    if surge is None:
        rest = [ordered] if ordered else []
    else:
        size = max(math.ceil(int(surge[:-1]) * desired / 100) if isinstance(surge, str) else surge, 1)
        rest = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    return ([head] if head else []) + rest


def plan_group(
    group: Group,
    snapshot: Snapshot,
    *,
    settings: Settings,
    now: datetime,
    sizes: dict[str, Resources] | None = None,
    surge: int | str | None = None,
    canary: int | None = None,
    recorded_desired: int | None = None,
) -> GroupPlan:
    """The whole plan for one group: what is replaced and why, in which waves, what happens to each
    pod on it, whether the pods fit, the audit and the estimate, and what blocks the rollout.
    ``sizes`` are the capacities of the group's instance types that no node reports yet;
    ``recorded_desired``, an interrupted rollout's desired capacity, which its waves add to."""
    index = Index(snapshot)
    by_instance = {node.instance_id: node for node in snapshot.nodes if node.instance_id}
    reasons = outdated(group, settings, now)
    old = tuple(i for i in group.instances if i.id in reasons)
    old_nodes = {i.id: by_instance[i.id] for i in old if i.id in by_instance}
    names = {node.name for node in old_nodes.values()}
    decisions = tuple(decide(pod, settings) for pod in snapshot.pods if pod.node in names)
    blockers = [
        Blocker(d.check, f"pod {d.pod.key}", d.reason, d.remedy, scope="workload")
        for d in decisions
        if d.action is Action.BLOCK
    ]
    moving = [
        d.pod
        for d in decisions
        if d.action is Action.EVICT and not d.pod.deleting and d.pod.phase not in _DONE
    ]
    blockers += _budget_blockers(moving, index)
    # Nothing to replace: a stray budget does not matter yet.
    idle_blockers, idle_warnings = _budgets_selecting_nothing(moving, index) if old else ([], [])
    blockers += idle_blockers
    fenced = {i for i, n in old_nodes.items() if n.unschedulable}
    desired = group.desired if recorded_desired is None else recorded_desired
    order = waves(reasons, fenced, surge, desired, canary)
    blockers += _group_blockers(
        group, old, old_nodes, by_instance, settings, desired=desired, surge=max(map(len, order), default=0)
    )
    node_of = {i: n.name for i, n in old_nodes.items()}
    wave_nodes = [{node_of.get(i) for i in wave} for wave in order]
    moving_by_wave = [[p for p in moving if p.node in nodes] for nodes in wave_nodes]
    group_nodes = {i.id: by_instance[i.id] for i in group.instances if i.id in by_instance}
    staying = [n for n in snapshot.nodes if n.name not in names and n.ready and not n.unschedulable]
    the_fit, misfits = fit(
        new_node(group, list(group_nodes.values()), snapshot.nodes, sizes or {}),
        moving_by_wave,
        launched=[len(wave) for wave in order],
        daemonsets=_daemonsets(decisions),
        staying=staying,
        snapshot=snapshot,
    )
    how_long = estimate(group, group_nodes, moving_by_wave, index) if old else None
    slowest = how_long.paces[0] if how_long and how_long.paces else None
    return GroupPlan(
        group,
        old,
        reasons,
        old_nodes,
        decisions,
        tuple(blockers + misfits),
        warnings=tuple(audit(moving, index) + serializing(moving, names, index, slowest) + idle_warnings),
        waves=tuple(tuple(w) for w in order),
        fit=the_fit,
        estimate=how_long,
        recorded_desired=recorded_desired,
    )


_DONE = ("Succeeded", "Failed")


def _daemonsets(decisions: Sequence[PodDecision]) -> Resources:
    """What DaemonSet pods take on a node: the most any old node gives them (they follow to the new)."""
    per_node: dict[str | None, Resources] = {}
    for decision in decisions:
        pod = decision.pod
        if decision.action is Action.SKIP and pod.owner is not None and pod.owner.kind == "DaemonSet":
            per_node[pod.node] = per_node.get(pod.node, Resources()) + pod.requests
    return max(per_node.values(), key=lambda r: (r.cpu, r.memory), default=Resources())


def _budget_blockers(moving: list[Pod], index: Index) -> list[Blocker]:
    blockers = []
    stuck: set[str] = set()
    for pod in moving:
        matching = index.budgets(pod)
        if len(matching) > 1:
            names = " and ".join(b.key for b in matching)
            blockers.append(
                Blocker(
                    "multiple-pdbs",
                    f"pod {pod.key}",
                    f"selected by more than one PodDisruptionBudget ({names}); the Eviction API refuses it",
                    "make the PDBs' selectors disjoint",
                    scope="workload",
                )
            )
        for budget in matching:
            # At full strength every expected pod is healthy: if even then the budget allows no
            # disruption, no eviction it gates can ever succeed.
            if budget.key not in stuck and spare(budget) == 0:
                stuck.add(budget.key)
                blockers.append(
                    Blocker(
                        "pdb-allows-no-disruption",
                        f"PodDisruptionBudget {budget.key}",
                        f"allows no disruption even with all {budget.expected_pods} pods healthy "
                        f"(needs {budget.desired_healthy} healthy)",
                        "scale the workload up or relax minAvailable/maxUnavailable",
                        scope="workload",
                    )
                )
    return blockers


def _budgets_selecting_nothing(moving: list[Pod], index: Index) -> tuple[list[Blocker], list[Finding]]:
    """The budgets that select no pod in the cluster. One in a namespace this rollout moves pods in was
    likely meant to protect some of them, and does not: it blocks. One elsewhere concerns other
    workloads, not this group's pods: a warning."""
    selected = {b.key for pod in index.snapshot.pods for b in index.budgets(pod)}
    namespaces = {pod.namespace for pod in moving}
    blockers: list[Blocker] = []
    warnings: list[Finding] = []
    for budget in index.snapshot.budgets:
        if budget.key in selected:
            continue
        subject, remedy = f"PodDisruptionBudget {budget.key}", _FIX_SELECTOR
        if budget.namespace in namespaces:
            cause = (
                f"selects no pods, in namespace {budget.namespace} where this rollout moves pods: the "
                "workload it was meant to protect is not protected"
            )
            blockers.append(Blocker(_SELECTS_NO_PODS, subject, cause, remedy, scope="workload"))
        else:
            cause = "selects no pods, and does not concern this group's pods"
            warnings.append(Finding(_SELECTS_NO_PODS, subject, cause, remedy))
    return blockers, warnings


_SELECTS_NO_PODS = "pdb-selects-no-pods"
_FIX_SELECTOR = "fix its selector to match the workload's pod labels, or delete it"


def _group_blockers(
    group: Group,
    old: tuple[Instance, ...],
    old_nodes: dict[str, Node],
    by_instance: dict[str, Node],
    settings: Settings,
    *,
    desired: int,
    surge: int,
) -> list[Blocker]:
    blockers: list[Blocker] = []
    if not old:
        return blockers  # nothing to replace: nothing to refuse
    if group.busy:
        blockers.append(
            Blocker(
                "scaling-activity",
                f"group {group.name}",
                "a scaling activity is in progress",
                "wait for it to finish and re-run",
            )
        )
    if desired + surge > group.max_size and not settings.may_raise_max_size:
        blockers.append(
            Blocker(
                "max-size",
                f"group {group.name}",
                f"surging {surge} instances needs MaxSize {desired + surge}, it is {group.max_size}",
                "raise MaxSize, or let nodeswap raise it during the rollout",
            )
        )
    for instance in group.instances:
        node = by_instance.get(instance.id)
        if instance.serving and node is not None and not node.ready:
            blockers.append(
                Blocker(
                    "node-not-ready",
                    f"node {node.name} ({instance.id})",
                    "node is NotReady",
                    "repair or replace it first",
                )
            )
    for instance in old:
        if instance.id not in old_nodes:
            blockers.append(
                Blocker(
                    "no-node",
                    f"instance {instance.id}",
                    "has no node in the cluster (no Node with its providerID)",
                    "check --kubeconfig/--context point at the cluster this group's instances join",
                )
            )
    return blockers
