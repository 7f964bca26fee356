"""Deciding, without acting: which instances a rollout replaces, what happens to each pod on them,
and what would stop the rollout before it starts.

Pure functions of a snapshot (the group, its nodes, the pods and PDBs) and the settings. The preflight
of `replace` and the `plan` command print the same decision; the engine acts on it and re-reads the
world before every irreversible step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from nodeswap.model import Budget, Group, Instance, Node, Pod

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


@dataclass(frozen=True)
class Blocker:
    """Why a rollout cannot start, about which object, and what the user can do about it."""

    cause: str
    subject: str
    remedy: str
    # "workload" blockers (pods, budgets) hold on every run; "group" ones describe the group before a
    # rollout and are expected mid-rollout (instances launching, MaxSize raised), so a resumed run skips them.
    scope: str = "group"


@dataclass(frozen=True)
class GroupPlan:
    group: Group
    outdated: tuple[Instance, ...]
    reasons: dict[str, str]  # instance id -> why it is replaced
    nodes: dict[str, Node]  # instance id -> its node, for the outdated instances that have one
    decisions: tuple[PodDecision, ...]
    blockers: tuple[Blocker, ...] = field(default=())

    @property
    def surge(self) -> int:
        return len(self.outdated)

    @property
    def max_size_needed(self) -> int:
        return self.group.desired + self.surge

    @property
    def evictions(self) -> tuple[Pod, ...]:
        return tuple(d.pod for d in self.decisions if d.action is Action.EVICT)


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
                age = now - launched
                reasons[instance.id] = (
                    "--all replaces every instance launched before the rollout"
                    if settings.replace_all
                    else f"launched {_days(age)} ago, older than {_days(settings.older_than or age)}"
                )
        elif settings.image is not None:
            if instance.image_id != settings.image:
                reasons[instance.id] = (
                    f"runs {instance.image_id or 'an unknown image'}, rolling out {settings.image}"
                )
        elif instance.launch != group.launch:
            was = instance.launch.describe() if instance.launch else "an unknown launch spec"
            reasons[instance.id] = f"launched from {was}; the group uses {group.launch.describe()}"
    return reasons


def _days(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 24 else f"{hours:.1f}h"


def decide(pod: Pod, settings: Settings) -> PodDecision:
    """What draining does with one pod; a blocked pod's reason names the flag or change that unblocks it."""
    if pod.mirror:
        return PodDecision(pod, Action.SKIP, "mirror pod: the kubelet manages it")
    if pod.owner is not None and pod.owner.kind == "DaemonSet":
        if settings.ignore_daemonsets:
            return PodDecision(pod, Action.SKIP, "DaemonSet-managed: goes with its node")
        return PodDecision(pod, Action.BLOCK, "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)")
    if pod.phase in ("Succeeded", "Failed") or pod.deleting:
        return PodDecision(pod, Action.EVICT, "finished or already terminating")
    for key, value in DO_NOT_DISRUPT.items():
        if pod.annotations.get(key) == value:
            return PodDecision(
                pod, Action.BLOCK, f"annotated {key}={value} (remove the annotation to allow it)"
            )
    if pod.owner is None and not settings.force:
        return PodDecision(pod, Action.BLOCK, "Pods declare no controller (use --force to override)")
    if pod.empty_dir and not settings.delete_emptydir_data:
        return PodDecision(
            pod, Action.BLOCK, "Pods with local storage (use --delete-emptydir-data to override)"
        )
    return PodDecision(pod, Action.EVICT)


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


def budgets_of(pod: Pod, budgets: Iterable[Budget]) -> list[Budget]:
    return [b for b in budgets if b.namespace == pod.namespace and selects(b.selector, pod.labels)]


def plan_group(
    group: Group,
    nodes: Iterable[Node],
    pods: Iterable[Pod],
    budgets: Iterable[Budget],
    *,
    settings: Settings,
    now: datetime,
) -> GroupPlan:
    budgets = list(budgets)
    by_instance: dict[str, Node] = {}
    for node in nodes:
        if node.instance_id:
            by_instance[node.instance_id] = node
    reasons = outdated(group, settings, now)
    old = tuple(i for i in group.instances if i.id in reasons)
    old_nodes = {i.id: by_instance[i.id] for i in old if i.id in by_instance}
    names = {node.name for node in old_nodes.values()}
    decisions = tuple(decide(pod, settings) for pod in pods if pod.node in names)
    blockers: list[Blocker] = []
    for decision in decisions:
        if decision.action is Action.BLOCK:
            blockers.append(
                Blocker(
                    decision.reason, f"pod {decision.pod.key}", _remedy(decision.reason), scope="workload"
                )
            )
    blockers += _budget_blockers([d.pod for d in decisions if d.action is Action.EVICT], budgets)
    blockers += _group_blockers(group, old, old_nodes, by_instance, settings)
    return GroupPlan(group, old, reasons, old_nodes, decisions, tuple(blockers))


def _remedy(reason: str) -> str:
    start = reason.find("(")
    return reason[start + 1 : -1] if start >= 0 else "change the pod"


def _budget_blockers(evictable: list[Pod], budgets: list[Budget]) -> list[Blocker]:
    blockers = []
    stuck: set[str] = set()
    for pod in evictable:
        matching = budgets_of(pod, budgets)
        if len(matching) > 1:
            names = " and ".join(b.key for b in matching)
            blockers.append(
                Blocker(
                    f"selected by more than one PodDisruptionBudget ({names}); the Eviction API refuses it",
                    f"pod {pod.key}",
                    "make the PDBs' selectors disjoint",
                    scope="workload",
                )
            )
        for budget in matching:
            # At full strength every expected pod is healthy: if even then the budget allows no
            # disruption, no eviction it gates can ever succeed.
            if budget.key not in stuck and budget.expected_pods - budget.desired_healthy <= 0:
                stuck.add(budget.key)
                blockers.append(
                    Blocker(
                        f"allows no disruption even with all {budget.expected_pods} pods healthy "
                        f"(needs {budget.desired_healthy} healthy)",
                        f"PodDisruptionBudget {budget.key}",
                        "scale the workload up or relax minAvailable/maxUnavailable",
                        scope="workload",
                    )
                )
    return blockers


def _group_blockers(
    group: Group,
    old: tuple[Instance, ...],
    old_nodes: dict[str, Node],
    by_instance: dict[str, Node],
    settings: Settings,
) -> list[Blocker]:
    blockers: list[Blocker] = []
    if not old:
        return blockers  # nothing to replace: nothing to refuse
    if group.busy:
        blockers.append(
            Blocker(
                "a scaling activity is in progress", f"group {group.name}", "wait for it to finish and re-run"
            )
        )
    if group.desired + len(old) > group.max_size and not settings.may_raise_max_size:
        blockers.append(
            Blocker(
                f"surging {len(old)} instances needs MaxSize {group.desired + len(old)}, "
                f"it is {group.max_size}",
                f"group {group.name}",
                "raise MaxSize, or let nodeswap raise it during the rollout",
            )
        )
    for instance in group.instances:
        node = by_instance.get(instance.id)
        if instance.serving and node is not None and not node.ready:
            blockers.append(
                Blocker("node is NotReady", f"node {node.name} ({instance.id})", "repair or replace it first")
            )
    for instance in old:
        if instance.id not in old_nodes:
            blockers.append(
                Blocker(
                    "has no node in the cluster (no Node with its providerID)",
                    f"instance {instance.id}",
                    "check --kubeconfig/--context point at the cluster this group's instances join",
                )
            )
    return blockers
