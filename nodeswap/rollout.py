"""The rollout engine: replace the outdated instances of a group without dropping a workload below its
PodDisruptionBudget, resumable from whatever state the systems are in.

IMPORTANT, the order of side effects (``Rollout._replace``), and why:
1. record on the group what restoring needs (original capacity, the processes nodeswap suspends)
   before changing anything, so any later run can finish or undo the rollout;
2. suspend the processes that would fight the rollout (AZRebalance would terminate new instances to
   rebalance zones), then surge: new capacity first, so evicted pods have somewhere to go;
3. wait until the new nodes are Ready, and keep cluster-autoscaler from removing them;
4. fence all old nodes of the wave (taint + cordon) before evicting anything, so no evicted pod lands
   on a node that is about to be drained next;
5. evict through the Eviction API, which lets the PDBs gate every move;
6. terminate an instance only once its node holds nothing evictable, and complete its termination
   hook only then; never delete the Node object (the termination handler looks it up);
7. restore MaxSize, the processes nodeswap suspended (only those) and the annotations; remove the record.

Nothing is kept only in memory: a re-run reads the record and the systems and continues.
The engine emits events; the CLI renders them.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client

from nodeswap.audit import INSTANCE_TYPE_LABELS
from nodeswap.aws import STATE_TAG_PREFIX, Aws
from nodeswap.errors import OperationError, RefusedError, UsageError
from nodeswap.kube import RETIRING_TAINT, SCALE_DOWN_DISABLED, Eviction, Kube
from nodeswap.model import Blocker, Group, Pod
from nodeswap.plan import Action, GroupPlan, Settings, budgets_of, decide, outdated, plan_group, waves

ORIGINAL_TAG = f"{STATE_TAG_PREFIX}original-capacity"  # "min,max,desired"
SUSPENDED_TAG = f"{STATE_TAG_PREFIX}suspended"  # the processes nodeswap suspended, "" for none
CUTOFF_TAG = f"{STATE_TAG_PREFIX}launched-before"  # --all/--older-than: replace instances launched before
# Marks the nodes whose scale-down-disabled annotation nodeswap set, so restore removes only those.
MARK_ANNOTATION = "nodeswap.io/scale-down-disabled"
# Processes that would change the group under the rollout: zone rebalancing terminates instances,
# alarms and scheduled actions change desired capacity.
FIGHTING_PROCESSES = ("AZRebalance", "AlarmNotification", "ScheduledActions")
# Auto Scaling has no watch: while waiting on it, the group is re-read at most this often (the cluster
# is watched meanwhile), in one DescribeAutoScalingGroups call for the whole group.
AWS_RECHECK_SECONDS = 5.0
# A watch can die silently (a half-open connection): waits wake at least this often to look again.
WAKE_SECONDS = 5.0
# A refused eviction is tried again after a change in the cluster, but not more often than this.
RETRY_SECONDS = 1.0
# After TerminateInstanceInAutoScalingGroup, how long to wait for its termination hook to be pending.
HOOK_APPEARS_SECONDS = 120.0
_BUDGET = re.compile(r"The disruption budget (\S+) ")
Emit = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    group: str
    phase: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutSettings:
    plan: Settings = field(default_factory=Settings)
    drain_timeout: timedelta = timedelta(minutes=15)
    join_timeout: timedelta = timedelta(minutes=15)
    grace_period: int | None = None
    lifecycle_hook: str | None = None
    launch_hook: str | None = None  # nodeswap completes this launch hook once a new node is Ready
    lock_duration: timedelta = timedelta(seconds=60)
    surge: int | str | None = None  # instances per wave, or "P%" of desired; None: everything in one wave
    max_unavailable: int | None = None  # old nodes drained at once; None: the whole wave
    dry_run: bool = False

    @property
    def ami(self) -> str | None:
        return self.plan.image


@dataclass
class Summary:
    group: str
    replaced: list[str] = field(default_factory=list)
    evicted: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    moved: list[Pod] = field(default_factory=list)  # the evicted pods, to see their workloads healthy again
    waited_on_budgets: dict[str, float] = field(default_factory=dict)
    nothing_to_do: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "nodes_replaced": len(self.replaced),
            "instances_replaced": self.replaced,
            "pods_evicted": self.evicted,
            "phase_seconds": {k: round(v, 2) for k, v in self.phases.items()},
            "waited_on_budgets_seconds": {k: round(v, 2) for k, v in self.waited_on_budgets.items()},
            "nothing_to_do": self.nothing_to_do,
        }


@dataclass(frozen=True)
class Capacity:
    min_size: int
    max_size: int
    desired: int

    def tag(self) -> str:
        return f"{self.min_size},{self.max_size},{self.desired}"

    @classmethod
    def parse(cls, text: str) -> Capacity:
        low, high, desired = (int(part) for part in text.split(","))
        return cls(low, high, desired)


def plan_groups(
    aws: Aws, kube: Kube, groups: list[Group], settings_for: Callable[[str], RolloutSettings], emit: Emit
) -> tuple[dict[str, GroupRollout], list[GroupPlan]]:
    """Plan every group, reading only: what `nodeswap plan` reports and `replace` acts on."""
    rollouts = {group.name: GroupRollout(aws, kube, settings_for(group.name), emit) for group in groups}
    for group in groups:
        if rollouts[group.name].settings.ami and group.mixed:
            raise UsageError(
                f"group {group.name} takes its launch template from a mixed instances policy, which --ami "
                "does not update yet",
                "create the launch template version, point the policy at it, then run without --ami",
            )
    return rollouts, [rollouts[group.name].plan(group) for group in groups]


def refusals(plans: list[GroupPlan]) -> list[tuple[str, Blocker]]:
    """The blockers that stop a run. A resumed rollout expects its own group-level effects (instances
    launching, MaxSize raised) but still refuses on what would lose data or break a budget."""
    return [
        (p.group.name, b)
        for p in plans
        for b in p.blockers
        if b.scope == "workload" or ORIGINAL_TAG not in p.group.tags
    ]


def replace_groups(
    aws: Aws,
    kube: Kube,
    groups: list[Group],
    settings_for: Callable[[str], RolloutSettings],
    emit: Emit,
    *,
    confirm: Callable[[list[GroupPlan]], bool] = lambda plans: True,
) -> list[Summary]:
    """Plan every group, refuse if any plan has a blocker (nothing changed yet), then replace the groups
    one after the other."""
    rollouts, plans = plan_groups(aws, kube, groups, settings_for, emit)
    for plan in plans:
        rollouts[plan.group.name].announce(plan)
    blockers = refusals(plans)
    if blockers:
        raise RefusedError(blockers)
    todo = [p for p in plans if p.outdated or ORIGINAL_TAG in p.group.tags]
    if any(rollouts[p.group.name].settings.dry_run for p in plans) or not todo:
        return [Summary(p.group.name, nothing_to_do=not p.outdated) for p in plans]
    if not confirm(todo):
        raise OperationError("not confirmed; nothing was changed", "re-run and answer y, or pass --yes")
    return [rollouts[plan.group.name].run(plan) for plan in todo]


class GroupRollout:
    """The rollout of one group with its settings."""

    def __init__(self, aws: Aws, kube: Kube, settings: RolloutSettings, emit: Emit) -> None:
        self.aws, self.kube, self.settings, self.emit = aws, kube, settings, emit
        self.run_id = uuid.uuid4().hex[:8]
        self._lock_lost = threading.Event()

    def plan(self, group: Group) -> GroupPlan:
        """The plan `nodeswap plan` prints and `replace` acts on: read-only."""
        group = self.aws.with_details(group)
        snapshot = self.kube.snapshot()
        reported = {n.labels.get(INSTANCE_TYPE_LABELS[0]) for n in snapshot.nodes if n.ready}
        return plan_group(
            group,
            snapshot,
            settings=self._selection(group),
            now=datetime.now(UTC),
            sizes=self.aws.instance_sizes([t for t in group.instance_types if t not in reported]),
            surge=self.settings.surge,
        )

    def run(self, plan: GroupPlan) -> Summary:
        with self._locked(plan.group.name):
            if self.settings.ami:
                self._bake(plan.group.name)
            return self._replace(plan)

    def _bake(self, name: str) -> None:
        """Point the group at a launch template version with the new AMI, unless it already is."""
        group = self.aws.groups([name])[0]
        if self.aws.image_of(group.launch) == self.settings.ami:
            return
        launch = self.aws.bake(group, self.settings.ami or "")
        self.emit(Event(name, "bake", f"created {launch.describe()} with {self.settings.ami}"))

    def announce(self, plan: GroupPlan) -> None:
        name = plan.group.name
        if not plan.outdated and ORIGINAL_TAG not in plan.group.tags:
            self.emit(Event(name, "plan", "nothing to replace: every instance is up to date"))
            return
        for instance in plan.outdated:
            node = plan.nodes.get(instance.id)
            where = node.name if node else "no node"
            message = f"replace {instance.id} ({where}): {plan.reasons[instance.id]}"
            self.emit(Event(name, "plan", message, {"instance": instance.id}))
        message = (
            f"{len(plan.evictions)} pods to evict; surge {plan.surge} "
            f"(desired {plan.group.desired} -> {plan.max_size_needed})"
        )
        self.emit(Event(name, "plan", message, {"evictions": len(plan.evictions), "surge": plan.surge}))
        for warning in plan.warnings:
            message = f"{warning.subject}: {warning.cause} -> {warning.remedy}"
            self.emit(Event(name, "audit", message, {"warning": warning.check}))
        if plan.estimate is not None:
            estimate = plan.estimate
            message = f"estimated {estimate.seconds:.0f} s; critical path: {estimate.critical_path}"
            self.emit(Event(name, "plan", message, {"estimate_seconds": round(estimate.seconds, 1)}))
        for _, blocker in refusals([plan]):
            message = f"{blocker.subject}: {blocker.cause} -> {blocker.remedy}"
            self.emit(Event(name, "preflight", message, {"blocker": blocker.subject, "check": blocker.check}))

    # ----- the rollout, in order ---------------------------------------------------------------

    def _replace(self, plan: GroupPlan) -> Summary:
        name = plan.group.name
        summary = Summary(name)
        with self.kube.changes() as changes:
            original = self._record(self.aws.groups([name])[0], plan)
            # Waves of --surge instances (default: all at once); an interrupted wave is finished first.
            while wave := self._next_wave(name, original):
                with self._timed(summary, "surge"):
                    self._surge(name, original, len(wave))
                with self._timed(summary, "join"):
                    self._join(name, changes)
                nodes = {
                    n.instance_id: n.name
                    for n in self.kube.nodes()
                    if n.instance_id and n.instance_id in wave
                }
                with self._timed(summary, "fence"):
                    self._fence(name, list(nodes.values()))
                with self._timed(summary, "drain"):
                    self._drain(name, wave, nodes, changes, summary)
            with self._timed(summary, "settle"):
                self._settle(name, changes, summary)
            with self._timed(summary, "restore"):
                self._restore(name, original)
        done = f"replaced {len(summary.replaced)} nodes, evicted {summary.evicted} pods"
        self.emit(Event(name, "done", done, summary.as_dict()))
        return summary

    @contextmanager
    def _timed(self, summary: Summary, phase: str) -> Iterator[None]:
        self._check_lock()
        started = time.monotonic()
        self.emit(Event(summary.group, phase, f"{phase} started"))
        try:
            yield
        finally:
            summary.phases[phase] = summary.phases.get(phase, 0.0) + time.monotonic() - started

    def _record(self, group: Group, plan: GroupPlan) -> Capacity:
        """Read the record of an interrupted run, or write one before the first change."""
        if ORIGINAL_TAG in group.tags:
            original = Capacity.parse(group.tags[ORIGINAL_TAG])
            message = (
                f"continuing the rollout recorded on the group (original min/max/desired {original.tag()})"
            )
            self.emit(Event(group.name, "resume", message))
            return original
        original = Capacity(group.min_size, group.max_size, group.desired)
        suspend = [p for p in FIGHTING_PROCESSES if p not in group.suspended]
        record = {ORIGINAL_TAG: original.tag(), SUSPENDED_TAG: ",".join(suspend)}
        launched = [i.launched_at for i in plan.outdated if i.launched_at is not None]
        if launched and (self.settings.plan.replace_all or self.settings.plan.older_than):
            record[CUTOFF_TAG] = max(launched).isoformat()
        self.aws.tag(group.name, record)
        return original

    def _selection(self, group: Group) -> Settings:
        """The plan settings, with the launch-time cutoff the rollout recorded when it started."""
        cutoff = group.tags.get(CUTOFF_TAG)
        if cutoff is None:
            return self.settings.plan
        return dataclasses.replace(self.settings.plan, launched_before=datetime.fromisoformat(cutoff))

    def _outdated(self, name: str, *, leaving: bool = False) -> dict[str, str]:
        group = self._aged(self.aws.groups([name])[0])
        return outdated(group, self._selection(group), datetime.now(UTC), leaving=leaving)

    def _aged(self, group: Group) -> Group:
        """The group with its instances' launch times and images, when the selection needs them."""
        selection = self.settings.plan
        if not (selection.replace_all or selection.older_than or selection.image):
            return group
        return self.aws.with_details(group)

    def _next_wave(self, name: str, original: Capacity) -> list[str]:
        fenced = {
            n.instance_id or "" for n in self.kube.nodes() if any(t.key == RETIRING_TAINT for t in n.taints)
        }
        return next(iter(waves(self._outdated(name), fenced, self.settings.surge, original.desired)), [])

    def _surge(self, name: str, original: Capacity, wave: int) -> None:
        group = self.aws.groups([name])[0]
        self.aws.suspend(name, [p for p in group.tags.get(SUSPENDED_TAG, "").split(",") if p])
        target = original.desired + wave
        if group.desired < target:
            self.aws.set_capacity(name, desired=target, max_size=max(group.max_size, target))
            self.emit(Event(name, "surge", f"desired {group.desired} -> {target}", {"desired": target}))

    def _join(self, name: str, changes: queue.Queue[str]) -> None:
        """Wait until every up-to-date instance the group's desired capacity calls for is InService
        with its node Ready. The cluster is watched; the group is re-read at most every few seconds."""
        deadline = time.monotonic() + self.settings.join_timeout.total_seconds()
        group, read_at, old = self.aws.groups([name])[0], time.monotonic(), self._outdated(name)
        while True:
            nodes = self.kube.nodes()
            known = {i.id for i in group.instances if i.lifecycle_state == "InService"}
            # A Ready node whose instance the last read did not show InService: worth asking AWS again
            # (at most once a second); otherwise the group is re-read every few seconds.
            news = any(n.ready and n.instance_id not in known for n in nodes)
            since = time.monotonic() - read_at
            if since >= AWS_RECHECK_SECONDS or (news and since >= 1.0):
                group, read_at, old = self.aws.groups([name])[0], time.monotonic(), self._outdated(name)
            if self.settings.launch_hook:
                self._release_launches(name, group, {n.instance_id for n in nodes if n.ready})
            needed = group.desired - len(old)
            fresh = {i.id for i in group.instances if i.lifecycle_state == "InService" and i.id not in old}
            ready = [n for n in nodes if n.instance_id in fresh and n.ready]
            if len(ready) >= needed:
                for node in ready:
                    if SCALE_DOWN_DISABLED not in node.annotations:
                        self.kube.annotate(
                            node.name, {SCALE_DOWN_DISABLED: "true", MARK_ANNOTATION: self.run_id}
                        )
                self.emit(
                    Event(name, "join", f"{len(ready)} new nodes Ready", {"nodes": [n.name for n in ready]})
                )
                return
            if time.monotonic() > deadline:
                raise OperationError(
                    f"only {len(ready)} of {needed} new nodes became Ready within "
                    f"{self.settings.join_timeout}; no node of this wave was touched",
                    "check why new instances do not join (kubectl get nodes, the instances' console "
                    "output), then re-run the same command to continue",
                )
            _wait(changes, min(AWS_RECHECK_SECONDS, deadline - time.monotonic()))

    def _release_launches(self, name: str, group: Group, ready: set[str | None]) -> None:
        """Own the launch hook (--launch-hook): CONTINUE it for each new instance whose node is Ready."""
        for instance in group.instances:
            pending = instance.lifecycle_state == "Pending:Wait" and instance.id in ready
            if pending and self.aws.complete(name, self.settings.launch_hook or "", instance.id):
                self.emit(Event(name, "join", f"completed launch hook for {instance.id}: its node is Ready"))

    def _fence(self, name: str, nodes: list[str]) -> None:
        """Taint and cordon every old node of the wave before the first eviction of the wave."""
        for node in nodes:
            self.kube.fence(node, self.run_id)
            self.kube.event(
                node, "NodeswapFenced", "nodeswap: tainted and cordoned; its pods will be evicted"
            )
        self.emit(Event(name, "fence", f"tainted and cordoned {len(nodes)} old nodes", {"nodes": nodes}))

    def _drain(
        self, name: str, wave: list[str], nodes: dict[str, str], changes: queue.Queue[str], summary: Summary
    ) -> None:
        """Evict the pods of the wave's fenced nodes, --max-unavailable nodes at a time (default: all; the
        budgets gate the pace), and retire each node once nothing but DaemonSet and mirror pods is left."""
        deadline = time.monotonic() + self.settings.drain_timeout.total_seconds()
        blocked_since: dict[str, float] = {}
        tried: dict[str, float] = {}  # pod uid -> when its eviction was last refused
        waiting, active = list(wave), list[str]()
        cap = self.settings.max_unavailable or len(wave)
        hooks = self._termination_hooks(name)
        while waiting or active:
            while waiting and len(active) < cap:
                active.append(waiting.pop(0))
            # One cluster-wide list per wake-up, rather than one per node in flight.
            listed = self.kube.pods()
            staying = {
                i: self._keeping([p for p in listed if i in nodes and p.node == nodes[i]]) for i in active
            }
            for instance in [i for i in active if not staying[i]]:
                self._retire(name, instance, nodes.get(instance), hooks, summary)
                active.remove(instance)
            pods = [p for i in active for p in staying[i]]
            if not pods:
                continue
            stuck = [d for d in (decide(p, self.settings.plan) for p in pods) if d.action is Action.BLOCK]
            if stuck:
                raise OperationError(
                    "pods that cannot be evicted are on nodes being retired: "
                    + "; ".join(f"{d.pod.key}: {d.reason} ({d.remedy})" for d in stuck),
                    "deal with those pods (or pass the flag named), then re-run the same command to continue",
                )
            if time.monotonic() > deadline:
                raise OperationError(
                    self._report_stuck(pods, blocked_since),
                    "relax or fix what blocks them, then re-run the same command to continue; "
                    "nothing holding an evictable pod was terminated",
                )
            now = time.monotonic()
            for pod in pods:
                # A refused eviction is retried when something changed, at most once a second.
                due = not pod.deleting and now - tried.get(pod.uid, 0.0) >= RETRY_SECONDS
                if due and not self._evict(name, pod, blocked_since, summary):
                    tried[pod.uid] = now
            # Only refused pods still waiting count: a pod evicted since is terminating, not retried.
            retry_at = min(
                (tried[p.uid] + RETRY_SECONDS for p in pods if p.uid in tried and not p.deleting),
                default=now + WAKE_SECONDS,
            )
            _wait(changes, min(WAKE_SECONDS, retry_at - time.monotonic(), deadline - time.monotonic()))
        for budget, since in blocked_since.items():
            summary.waited_on_budgets[budget] = (
                summary.waited_on_budgets.get(budget, 0) + time.monotonic() - since
            )
        self.emit(Event(name, "drain", f"drained and retired {len(wave)} nodes"))

    def _settle(self, name: str, changes: queue.Queue[str], summary: Summary) -> None:
        """Wait until the budgets of the moved pods are fully healthy again, so the rollout ends with its
        workloads at strength; past --drain-timeout, say which are not and finish anyway."""
        deadline = time.monotonic() + self.settings.drain_timeout.total_seconds()
        while True:
            short = [
                b
                for b in self.kube.budgets()
                if any(b in budgets_of(p, [b]) for p in summary.moved) and b.current_healthy < b.expected_pods
            ]
            if not short:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"{b.key} ({b.current_healthy}/{b.expected_pods})" for b in short)
                self.emit(Event(name, "settle", f"not all moved workloads are healthy yet: {names}"))
                return
            _wait(changes, min(WAKE_SECONDS, deadline - time.monotonic()))

    def _staying(self, node: str) -> list[Pod]:
        return self._keeping(self.kube.pods_on(node))

    def _keeping(self, pods: list[Pod]) -> list[Pod]:
        """The pods keeping a node from being retired: all but DaemonSet, mirror and finished pods."""
        return [
            p
            for p in pods
            if decide(p, self.settings.plan).action is not Action.SKIP
            and p.phase not in ("Succeeded", "Failed")
        ]

    def _evict(self, name: str, pod: Pod, blocked_since: dict[str, float], summary: Summary) -> bool:
        """Try to evict ``pod``; False when a budget (or the API server) says not now."""
        result = self.kube.evict(pod, self.settings.grace_period)
        if result.outcome is Eviction.EVICTED:
            summary.evicted += 1
            summary.moved.append(pod)
            self.emit(Event(name, "drain", f"evicted {pod.key}", {"pod": pod.key}))
        elif result.outcome is Eviction.BLOCKED:
            found = _BUDGET.search(result.message)
            budget = f"{pod.namespace}/{found.group(1)}" if found else result.message or "the API server"
            if budget not in blocked_since:
                blocked_since[budget] = time.monotonic()
                self.emit(
                    Event(name, "drain", f"waiting on PDB {budget}: {result.message}", {"pod": pod.key})
                )
            return False
        elif result.outcome is Eviction.MISCONFIGURED:
            raise OperationError(
                f"cannot evict {pod.key}: {result.message}",
                "make the PodDisruptionBudgets' selectors disjoint, then re-run",
            )
        return True

    @staticmethod
    def _report_stuck(pods: list[Pod], blocked: dict[str, float]) -> str:
        by_cause: dict[str, list[str]] = defaultdict(list)
        for pod in pods:
            by_cause["still terminating" if pod.deleting else "eviction refused"].append(pod.key)
        lines = [f"  {cause}: {', '.join(sorted(keys))}" for cause, keys in by_cause.items()]
        lines += [f"  waiting on PDB {budget}" for budget in blocked]
        return "the drain timed out with pods still on the old nodes:\n" + "\n".join(lines)

    def _termination_hooks(self, name: str) -> list[str]:
        """The hooks to complete, after finishing any an interrupted run left waiting: their nodes were
        drained before termination (an instance whose node still holds pods is left alone, as another
        tool may be draining it)."""
        group = self.aws.groups([name], full=True)[0]
        hooks = (
            [self.settings.lifecycle_hook]
            if self.settings.lifecycle_hook
            else [h.name for h in group.hooks if h.terminating]
        )
        node_of = {n.instance_id: n.name for n in self.kube.nodes()}
        waiting = {i.id for i in group.instances if i.lifecycle_state == "Terminating:Wait"}
        for instance in self._outdated(name, leaving=True):
            node = node_of.get(instance)
            if instance in waiting and not (node and self._staying(node)):
                for hook in hooks:
                    self._complete(name, hook, instance)
        return hooks

    def _retire(self, name: str, instance: str, node: str | None, hooks: list[str], summary: Summary) -> None:
        self._check_lock()
        if node is not None:
            self.kube.event(node, "NodeswapRetiring", f"nodeswap: drained; terminating {instance}")
        self.aws.terminate(instance)
        for hook in hooks:
            self._complete(name, hook, instance)
        summary.replaced.append(instance)
        self.emit(Event(name, "retire", f"terminated {instance}", {"instance": instance}))

    def _complete(self, name: str, hook: str, instance: str) -> None:
        """CONTINUE the termination hook once it is pending. Right after the termination call the
        instance may still show InService or Terminating; AWS has no watch, so nodeswap asks again with
        a growing delay until the action is pending or the instance is past it."""
        deadline = time.monotonic() + HOOK_APPEARS_SECONDS
        delay = 0.2
        while not self.aws.complete(name, hook, instance):
            state = self.aws.groups([name])[0].instance(instance)
            if state is None or state.lifecycle_state not in ("InService", "Terminating", "Terminating:Wait"):
                return  # completed by another tool, or the instance is past its hooks: success
            if time.monotonic() > deadline:
                self.emit(
                    Event(
                        name,
                        "retire",
                        f"the {hook} hook of {instance} never became pending; "
                        "it will end at its heartbeat timeout",
                    )
                )
                return
            time.sleep(delay)
            delay = min(delay * 2, AWS_RECHECK_SECONDS)

    def _restore(self, name: str, original: Capacity) -> None:
        group = self.aws.groups([name])[0]
        # If Auto Scaling replaced an old instance itself, desired is above the original: keep MaxSize
        # large enough for it and say so, rather than terminate a node that was never drained.
        max_size = max(original.max_size, group.desired)
        self.aws.set_capacity(name, max_size=max_size)
        self.aws.resume(name, [p for p in group.tags.get(SUSPENDED_TAG, "").split(",") if p])
        for node in self.kube.nodes():
            if MARK_ANNOTATION in node.annotations:
                self.kube.annotate(node.name, {SCALE_DOWN_DISABLED: None, MARK_ANNOTATION: None})
        self.aws.untag(name, [ORIGINAL_TAG, SUSPENDED_TAG, CUTOFF_TAG])
        message = f"restored MaxSize {max_size} and the processes nodeswap suspended"
        if group.desired != original.desired:
            message += f"; desired is {group.desired}, it was {original.desired}: set it back when convenient"
        self.emit(Event(name, "restore", message))

    # ----- the lock ----------------------------------------------------------------------------

    @contextmanager
    def _locked(self, group: str) -> Iterator[None]:
        name = f"nodeswap-{group}"
        holder = f"{socket.gethostname()}/{os.getpid()}/{self.run_id}"
        self._acquire(name, holder, group)
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(name, holder, stop), daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            self.kube.release_lease(name, holder)

    def _check_lock(self) -> None:
        if self._lock_lost.is_set():
            raise OperationError(
                "lost the group's lock (it could not be renewed, or another run took it over); stopped",
                "check for another nodeswap run on this group; re-run the same command to continue",
            )

    def _acquire(self, name: str, holder: str, group: str) -> None:
        now = datetime.now(UTC)
        current = self.kube.lease(name)
        lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1LeaseSpec(
                holder_identity=holder,
                lease_duration_seconds=int(self.settings.lock_duration.total_seconds()),
                acquire_time=now,
                renew_time=now,
            ),
        )
        if current is not None:
            spec = current.spec
            seen = spec.renew_time or spec.acquire_time or now
            expires = seen + timedelta(seconds=spec.lease_duration_seconds or 0)
            if spec.holder_identity != holder and expires > now:
                raise OperationError(
                    f"group {group} is being replaced by {spec.holder_identity} (lock {name} in kube-system, "
                    f"renewed {seen:%H:%M:%S}, expires {expires:%H:%M:%S} UTC)",
                    "wait for that run to finish; if it died, re-run once the lock has expired",
                )
            lease.metadata.resource_version = current.metadata.resource_version
            self.emit(Event(group, "lock", f"taking over the expired lock of {spec.holder_identity}"))
        if self.kube.write_lease(lease, create=current is None) is None:
            raise OperationError(
                f"another run took the lock {name} at the same moment", "wait for that run to finish"
            )

    def _renew(self, name: str, holder: str, stop: threading.Event) -> None:
        """Renew the lease a few times per duration; give up (and stop the rollout) only when another
        holder has it or it could not be renewed before it expired."""
        duration = self.settings.lock_duration.total_seconds()
        renewed = time.monotonic()
        while not stop.wait(duration / 3):
            try:
                lease = self.kube.lease(name)
                if lease is None or lease.spec.holder_identity != holder:
                    self._lock_lost.set()
                    return
                lease.spec.renew_time = datetime.now(UTC)
                if self.kube.write_lease(lease, create=False) is not None:
                    renewed = time.monotonic()
            except OperationError:
                pass  # a passing API failure: try again at the next tick
            if time.monotonic() - renewed > duration:
                self._lock_lost.set()
                return


def _wait(changes: queue.Queue[str], seconds: float) -> None:
    """Block until something in the cluster changes (or ``seconds`` pass), then drop the backlog."""
    try:
        changes.get(timeout=max(seconds, 0.0))
    except queue.Empty:
        return
    while True:
        try:
            changes.get_nowait()
        except queue.Empty:
            return
