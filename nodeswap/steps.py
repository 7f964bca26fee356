"""The steps of a rollout, each a function of the ``Run``: surge, join, fence, drain (retiring each node
once it is empty), settle and restore. Each re-reads the systems before it acts, so any of them can be
run again after an interruption; each failure that leaves the cluster safe to undo is a ``StepFailed``.
The order of the steps, and why, is in ``rollout``.
"""

from __future__ import annotations

import functools
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nodeswap.audit import spare
from nodeswap.cache import Concern, OwnerKey
from nodeswap.errors import OperationError
from nodeswap.kube import SCALE_DOWN_DISABLED, Eviction, EvictionResult, fenced
from nodeswap.model import Budget, Group, Node, Pod
from nodeswap.plan import Action, outdated, waves
from nodeswap.run import IN_FLIGHT, Run, concurrently

# Marks the nodes whose scale-down-disabled annotation nodeswap set (the value is the rollout's id), so
# restore removes only the marks of its own rollout.
MARK_ANNOTATION = "nodeswap.io/scale-down-disabled"
# Processes that would change the group under the rollout: zone rebalancing terminates instances,
# alarms and scheduled actions change desired capacity.
FIGHTING_PROCESSES = ("AZRebalance", "AlarmNotification", "ScheduledActions")
# Auto Scaling has no watch: while waiting on it, the group is re-read at most this often (the cluster
# is watched meanwhile), in one DescribeAutoScalingGroups call for the whole group; sooner, but not
# within EARLY_RECHECK_SECONDS of the last read, when the cluster shows something the group must explain
# or the group does not list yet the instances its desired capacity calls for (Auto Scaling starts the
# launches seconds after the capacity change: then backing off to AWS_RECHECK_SECONDS).
AWS_RECHECK_SECONDS, EARLY_RECHECK_SECONDS = 5.0, 1.0
# A watch can die silently (a half-open connection): waits wake at least this often to look again.
WAKE_SECONDS = 5.0
# An eviction refused for another cause than a budget (the API server shedding load) is tried again
# after a change in the cluster, but not more often than this. A budget's cached record that does not
# show this drain's last evictions yet (see Drain) is trusted again after as long, should no newer
# record come.
RETRY_SECONDS = 1.0
# A drain pass evicts at most this many pods, the most pressing first, then looks again: a budget that
# allows another eviction meanwhile is not kept waiting behind hundreds of evictions no budget paces.
EVICTIONS_PER_PASS = 2 * IN_FLIGHT
# A new instance is given up on once it has gone this many times the group's measured launch-to-Ready
# time, plus this margin, without a Ready node (well before --join-timeout for a bad image).
STALL_FACTOR, STALL_MARGIN_SECONDS = 3.0, 30.0
# How soon after the first termination call hooks are looked for, and again once the drain is done;
# then twice as long each time, up to AWS_RECHECK_SECONDS.
HOOK_FIRST_LOOK_SECONDS = 0.2
# An instance is terminated while its node's last pods terminate only if nodeswap's hooks hold it at
# least this much longer than their grace periods.
HOLD_MARGIN_SECONDS = 30
# Termination hooks named so are nodeswap's to complete (besides the one named by --lifecycle-hook);
# any other hook belongs to another tool, which nodeswap waits for.
OWN_HOOK_PREFIX = "nodeswap"
_LEAVING = ("Terminating", "Terminating:Wait")
_DONE = ("Succeeded", "Failed")


class StepFailed(OperationError):
    """A step could not finish (new nodes never Ready, a drain past its timeout, a canary that is not
    healthy); the cluster is safe and the wave can be rolled back."""


def group_of(run: Run) -> Group:
    return run.aws.groups([run.name])[0]


def outdated_now(run: Run, group: Group | None = None, *, leaving: bool = False) -> dict[str, str]:
    """The instances the rollout still replaces (``leaving``: those on their way out), by its record."""
    group = group or group_of(run)
    selection = run.selection
    if selection.replace_all or selection.older_than or selection.image:
        group = run.aws.with_details(group)  # their launch times and images
    return outdated(group, selection, datetime.now(UTC), leaving=leaving)


def next_wave(run: Run, group: Group) -> tuple[list[str], bool]:
    """The next wave, and whether it is the canary: an interrupted wave (its nodes fenced) first; the
    canary (--canary) before any instance is retired. ``group`` as read just before."""
    left = outdated_now(run, group)
    first = {n.instance_id or "" for n in run.cluster.nodes() if fenced(n)}
    canary = run.settings.canary if not run.record.retired and not first & set(left) else None
    found = waves(left, first, run.settings.surge, run.record.capacity.desired, canary)
    return (found[0], canary is not None) if found else ([], False)


def surge(run: Run, group: Group, size: int) -> None:
    """Suspend the processes that would fight the rollout, then raise desired by the wave's size.
    ``group`` as read just before."""
    missing = [p for p in run.record.suspended if p not in group.suspended]  # a re-run's or a wave's
    if missing:
        run.aws.suspend(run.name, missing)
    target = run.record.capacity.desired + size
    if group.desired < target:
        run.aws.set_capacity(run.name, desired=target, max_size=max(group.max_size, target))
        run.say("surge", f"desired {group.desired} -> {target}", desired=target)


def join(run: Run) -> list[Node]:
    """Wait until every up-to-date instance the group's desired capacity calls for is InService with its
    node Ready, keeping cluster-autoscaler off each new node from its registration on (an annotation that
    restore removes). The cluster's nodes are watched; the group
    is re-read every AWS_RECHECK_SECONDS, and sooner while it lists fewer instances than desired or when
    a node turns Ready whose instance the last read did not show InService (other groups' nodes, once
    seen, are not looked up again)."""
    deadline = time.monotonic() + run.settings.join_timeout.total_seconds()
    stall = STALL_FACTOR * run.join_seconds + STALL_MARGIN_SECONDS
    first_seen: dict[str, float] = {}  # new instance -> when this run first saw it in the group
    others: set[str | None] = set()  # instances of Ready nodes that are not in the group
    released: set[str | None] = set()  # instances whose launch hook this run completed
    marked: set[str] = set()  # new nodes annotated by this join (the cache may not show it yet)
    # While the group lists fewer instances than desired, Auto Scaling has yet to start the launches (10
    # to 20 s on AWS): looked at again soon, then less often, as its request budget is shared.
    launch_wait = EARLY_RECHECK_SECONDS
    group = group_of(run)
    read_at, old = time.monotonic(), outdated_now(run, group)
    while True:
        mark = run.cluster.mark()
        nodes = run.cluster.nodes()
        in_service = {i.id for i in group.instances if i.lifecycle_state == "InService"}
        unexplained = {n.instance_id for n in nodes if n.ready} - in_service - others
        unlaunched = sum(i.serving for i in group.instances) < group.desired
        wait = EARLY_RECHECK_SECONDS if unexplained else launch_wait if unlaunched else AWS_RECHECK_SECONDS
        due = read_at + wait
        if time.monotonic() >= due:
            if unlaunched:
                launch_wait = min(launch_wait * 2, AWS_RECHECK_SECONDS)
            group = group_of(run)
            read_at, old = time.monotonic(), outdated_now(run, group)
            members = {i.id for i in group.instances}
            others |= {n.instance_id for n in nodes if n.ready and n.instance_id not in members}
            continue
        ready_ids = {n.instance_id for n in nodes if n.ready}
        if run.settings.launch_hook:
            released |= _release_launches(run, group, ready_ids - released)
        new = [i for i in group.instances if i.serving and i.id not in old]
        for instance in new:
            first_seen.setdefault(instance.id, time.monotonic())
        launched = {i.id for i in new if run.record.launched_by(i)}
        if launched - set(run.record.launched):  # recorded at once, for an undo
            run.update(launched=tuple(sorted(launched | set(run.record.launched))))
        new_ids = {i.id for i in new}
        _keep_autoscaler_off(run, [n for n in nodes if n.instance_id in new_ids], marked)
        new_in_service = {i.id for i in new if i.lifecycle_state == "InService"}
        ready = [n for n in nodes if n.ready and n.instance_id in new_in_service]
        if len(ready) >= group.desired - len(old):
            run.say("join", f"{len(ready)} new nodes Ready", nodes=[n.name for n in ready])
            return ready
        now = time.monotonic()
        stalled = [i for i in new if i.id not in ready_ids and now - first_seen[i.id] > stall]
        if stalled or now > deadline:
            by_instance = {n.instance_id: n for n in nodes}
            waiting = [i for i in new if i.id not in ready_ids]
            lines = [
                f"{i.id} ({i.lifecycle_state}, launched {now - first_seen[i.id]:.0f} s ago, "
                + (
                    f"node {registered.name} NotReady)"
                    if (registered := by_instance.get(i.id))
                    else "no node registered)"
                )
                for i in waiting
            ]
            limit = (
                f"{stall:.0f} s (3x the group's launch-to-Ready time + 30 s)"
                if stalled
                else str(run.settings.join_timeout)
            )
            raise StepFailed(
                f"new instances did not become Ready nodes within {limit}: " + ", ".join(lines),
                "check the new image (kubectl get nodes; the instances' console output: "
                "aws ec2 get-console-output --instance-id ...)",
            )
        run.cluster.wait(mark, Concern(nodes=True), min(due, deadline) - now)


def _keep_autoscaler_off(run: Run, new: list[Node], marked: set[str]) -> None:
    """Annotate each new node not marked yet so that cluster-autoscaler leaves it alone (restore removes
    the marks of this rollout). Done as each registers, while the others still boot, rather than all at
    the end: hundreds of annotations take a while."""
    marks: dict[str, str | None] = {SCALE_DOWN_DISABLED: "true", MARK_ANNOTATION: run.record.run}
    unmarked = [n.name for n in new if n.name not in marked and SCALE_DOWN_DISABLED not in n.annotations]
    concurrently(functools.partial(_annotate, run, marks), unmarked)
    marked.update(unmarked)


def _release_launches(run: Run, group: Group, ready: set[str | None]) -> set[str | None]:
    """Own the launch hook (--launch-hook): CONTINUE it for each new instance whose node is Ready (once:
    the group read may show it Pending:Wait until the next re-read). Returns the instances released."""
    released: set[str | None] = set()
    for instance in group.instances:
        pending = instance.lifecycle_state == "Pending:Wait" and instance.id in ready
        if pending and run.aws.complete(run.name, run.settings.launch_hook or "", instance.id):
            run.say("join", f"completed launch hook for {instance.id}: its node is Ready")
            released.add(instance.id)
    return released


def check_canary(run: Run, nodes: list[Node]) -> None:
    """The canary's nodes run every DaemonSet the group's nodes run, Ready, and every pod on them is
    Ready: else the rollout stops before the next wave (within --join-timeout)."""
    names = {n.name for n in nodes}
    deadline = time.monotonic() + run.settings.join_timeout.total_seconds()
    while True:
        mark = run.cluster.mark()
        daemonsets = run.cluster.daemonsets_off(names)
        unhealthy = [
            f"{node}: {what}"
            for node in sorted(names)
            for what in _unhealthy_on(run.cluster.pods_on(node), daemonsets)
        ]
        if not unhealthy:
            run.say("canary", f"canary nodes healthy: {', '.join(sorted(names))}")
            return
        if time.monotonic() > deadline:
            raise StepFailed(
                "the canary's nodes are not healthy: " + "; ".join(unhealthy),
                "check the new image with the canary's nodes (kubectl describe node/pod)",
            )
        concern = Concern(pods_on=frozenset(names))
        run.cluster.wait(mark, concern, min(WAKE_SECONDS, deadline - time.monotonic()))


def _unhealthy_on(pods: list[Pod], daemonsets: set[OwnerKey]) -> list[str]:
    """What is not healthy on one node: a DaemonSet without a Ready pod there, a pod not Ready."""
    running = {(p.namespace, p.owner) for p in pods if p.ready}
    missing = [
        f"DaemonSet {namespace}/{owner.name} not Ready"
        for namespace, owner in sorted(daemonsets, key=str)
        if (namespace, owner) not in running
    ]
    return missing + [f"pod {p.key} not Ready" for p in pods if not p.ready and p.phase not in _DONE]


def fence(run: Run, nodes: list[str]) -> None:
    """Taint and cordon every old node of the wave before the first eviction of the wave."""

    def fence_one(name: str) -> None:
        node = run.cluster.node(name)
        if node is None:
            return  # gone already: nothing to move off it
        run.kube.fence(node, run.record.run)
        run.kube.event(name, "NodeswapFenced", "nodeswap: tainted and cordoned; its pods will be evicted")

    concurrently(fence_one, nodes)
    run.say("fence", f"tainted and cordoned {len(nodes)} nodes", nodes=nodes)


@dataclass(frozen=True)
class Spent:
    """Evictions a budget's cached record does not show: those made against it, or all it allows once
    the API server refused one (the record is behind)."""

    record: Budget
    evictions: int
    at: float  # when the last of them was made (monotonic seconds)


@dataclass
class Drain:
    """Evict the pods of fenced nodes, ``cap`` nodes at a time, and retire each node (terminate its
    instance, complete nodeswap's hook) once nothing but DaemonSet, mirror and finished pods is left.

    A Ready pod whose budget allows no disruption now (as the cache has it) is not asked about, since the
    API server would refuse it: the budget's next change wakes the drain. The API server counts an
    eviction against its budget at once, but the budget's record shows it only a moment later: until a
    newer record comes, the drain counts its own evictions against the cached one, and a refusal by the
    budget marks that record as behind (its pods are asked again once a newer one comes, not on a
    timer). An eviction refused by a loaded API server is asked again after RETRY_SECONDS."""

    run: Run
    hooks: Hooks
    blocked_since: dict[str, float] = field(default_factory=dict)  # budget -> waited on since
    waiting_on: dict[str, str] = field(default_factory=dict)  # pod uid -> the budget it waits on
    refused: dict[str, float] = field(default_factory=dict)  # pod uid -> when its eviction was refused
    spent: dict[str, Spent] = field(default_factory=dict)  # budget -> evictions its record does not show
    at_once: dict[str, int] = field(default_factory=dict)  # budget -> the fewest pods it let go at once
    evicted: set[str] = field(default_factory=set)  # pod uids: terminating, shown in the cache or not
    evicted_from: set[str] = field(default_factory=set)  # nodes this drain evicted a pod from

    def __call__(self, wave: list[str], nodes: dict[str, str], cap: int) -> None:
        run = self.run
        deadline = time.monotonic() + run.settings.drain_timeout.total_seconds()
        waiting, active = list(wave), list[str]()
        while waiting or active:
            while waiting and len(active) < cap:
                active.append(waiting.pop(0))
            run.lock.check()
            mark = run.cluster.mark()
            staying = {i: keeping(run, run.cluster.pods_on(nodes[i])) if i in nodes else [] for i in active}
            # The cache may not show yet a pod bound a moment ago: a node that looks empty is listed
            # afresh before its instance goes, as kubectl drain lists a node's pods. Unless a pod this
            # drain evicted from it is gone from the cache: pod events arrive in order, so the cache
            # then shows every pod bound there before the node was fenced (a fresh list would miss a
            # pod bound after it all the same).
            looks_empty = [i for i in active if not staying[i] and i in nodes]
            for i in [i for i in looks_empty if nodes[i] not in self.evicted_from]:
                staying[i] = keeping(run, run.kube.pods_on(nodes[i]))
            drained = [i for i in active if not staying[i]]
            # A node whose last pods are all terminating goes now, its hook holding the instance until
            # they are gone: Auto Scaling's seconds to start the termination pass meanwhile. Not while
            # nodes wait for --max-unavailable: a node counts until its pods are gone.
            held = {
                i: nodes[i]
                for i in active
                if not waiting and staying[i] and self.hooks.can_hold(staying[i], self.evicted)
            }
            if drained or held:
                retire(run, drained + list(held), self.hooks, held)
                active = [i for i in active if staying[i] and i not in held]
            pods = [p for i in active for p in staying[i]]
            if not pods:
                continue
            stuck = [d for d in map(run.decide, pods) if d.action is Action.BLOCK]
            if stuck:
                raise StepFailed(
                    "pods that cannot be evicted are on nodes being drained: "
                    + "; ".join(f"{d.pod.key}: {d.reason} ({d.remedy})" for d in stuck),
                    "deal with those pods (or pass the flag named)",
                )
            if time.monotonic() > deadline:
                raise StepFailed(self._stuck(pods), "relax or fix what blocks them")
            pressing = self._evict_due(pods)
            self.hooks.poll()
            if pressing:
                continue  # the rest of what was due, after a fresh look
            now = time.monotonic()
            # A budget that its uncounted evictions leave at nothing is looked at again once the count
            # lapses, should no newer record come.
            held_back = [s.at for s in self.spent.values() if s.evictions >= s.record.disruptions_allowed]
            refused = [self.refused[p.uid] for p in pods if p.uid in self.refused]
            retry_at = min((at + RETRY_SECONDS for at in refused + held_back), default=now + WAKE_SECONDS)
            concern = Concern(
                pods_on=frozenset(nodes[i] for i in active) | self.hooks.concern().pods_on,
                budgets=frozenset(self.blocked_since),
            )
            run.cluster.wait(mark, concern, min(WAKE_SECONDS, retry_at - now, deadline - now))
        for budget in list(self.blocked_since):
            self._waited(budget)
        self.hooks.hurry()  # the last hooks are all that is left to do besides waiting: no longer spaced out

    def _evict_due(self, pods: list[Pod]) -> bool:
        """Evict, all at once, each pod not yet terminating that its budgets allow, and whose last
        refusal is older than RETRY_SECONDS: at most EVICTIONS_PER_PASS, the most pressing first.
        Whether more were due."""
        run = self.run
        allows: dict[str, int] = {}  # budget -> disruptions it allows still, in this pass
        due: list[tuple[Pod, list[Budget], int]] = []  # with the rounds still ahead of its slowest budget
        here = {p.uid for p in pods}  # a pod gone meanwhile (deleted by another hand) waits no more
        self.waiting_on = {uid: budget for uid, budget in self.waiting_on.items() if uid in here}
        moving = []
        for pod in pods:
            if pod.deleting or pod.uid in self.evicted:
                self.refused.pop(pod.uid, None)
            else:
                moving.append((pod, run.cluster.budgets_of(pod)))
        rounds = self._rounds_left(moving)
        now = time.monotonic()
        self.spent = {key: s for key, s in self.spent.items() if now - s.at < RETRY_SECONDS}
        for pod, budgets in moving:
            refused = self.refused.get(pod.uid)
            if refused and time.monotonic() - refused < RETRY_SECONDS:
                continue
            # A pod that is not Ready may be evicted whatever the budget allows (its unhealthy pod
            # eviction policy): the API server decides.
            short = (
                next((b for b in budgets if allows.setdefault(b.key, self._allowed(b)) <= 0), None)
                if pod.ready
                else None
            )
            if short is not None:
                evicting = short.disruptions_allowed - allows[short.key]
                self._wait_on(short.key, pod, _allows_none(short, evicting))
                self.refused.pop(pod.uid, None)  # asked again when the budget changes, not on a timer
                continue
            for budget in budgets:
                allows[budget.key] = allows.get(budget.key, self._allowed(budget)) - 1
            due.append((pod, budgets, max((rounds[b.key] for b in budgets), default=0)))
        # A pass's evictions take a while at hundreds of nodes: the pods of the budgets with the most
        # rounds still ahead go first, since the slowest budget's rounds set the drain's length.
        ordered = sorted(due, key=lambda item: -item[2])[:EVICTIONS_PER_PASS]
        results = concurrently(functools.partial(_evict, run), [pod for pod, _, _ in ordered])
        for (pod, budgets, _), result in zip(ordered, results, strict=True):
            if result.outcome is Eviction.EVICTED:
                self._spend(budgets, 1)
                self.evicted.add(pod.uid)
                if pod.node:
                    self.evicted_from.add(pod.node)
                run.summary.evicted += 1
                run.summary.moved.append(pod)
                run.say("drain", f"evicted {pod.key}", pod=pod.key)
                waited = self.waiting_on.pop(pod.uid, None)
                if waited in self.blocked_since:
                    self._waited(waited)
                self.refused.pop(pod.uid, None)
            elif result.outcome is Eviction.BLOCKED:
                self._wait_on(result.budget or "a PodDisruptionBudget", pod, result.message)
                if budgets:
                    self._spend(budgets, None)
                # A budget the cache has not seen yet, or a pod that is not Ready (asked about whatever
                # its budget allows): asked again after RETRY_SECONDS.
                if not budgets or not pod.ready:
                    self.refused[pod.uid] = time.monotonic()
            elif result.outcome is Eviction.THROTTLED:
                self.refused[pod.uid] = time.monotonic()
            elif result.outcome is Eviction.MISCONFIGURED:
                raise StepFailed(
                    f"cannot evict {pod.key}: {result.message}",
                    "make the PodDisruptionBudgets' selectors disjoint",
                )
        return len(due) > len(ordered)

    def _rounds_left(self, moving: list[tuple[Pod, list[Budget]]]) -> dict[str, int]:
        """Budget -> the rounds its pods still to move take, as many at a time as it let go at the
        fewest during this drain: a minAvailable budget counts an evicted pod's replacement beside it
        while it terminates, and would look faster than it is."""
        pods: dict[str, int] = defaultdict(int)
        budgets: dict[str, Budget] = {}
        for _, of in moving:
            for budget in of:
                pods[budget.key] += 1
                budgets[budget.key] = budget
        for key, budget in budgets.items():  # once per budget: a pass looks at thousands of pods
            self.at_once[key] = min(self.at_once.get(key, spare(budget)), spare(budget))
        return {key: math.ceil(n / max(self.at_once[key], 1)) for key, n in pods.items()}

    def _allowed(self, budget: Budget) -> int:
        """The disruptions the budget allows, as cached, less this drain's evictions its record does not
        show yet."""
        spent = self.spent.get(budget.key)
        return budget.disruptions_allowed - (spent.evictions if spent and spent.record is budget else 0)

    def _spend(self, budgets: list[Budget], evictions: int | None) -> None:
        """Count evictions against the budgets' cached records (None: all they allow)."""
        now = time.monotonic()
        for budget in budgets:
            spent = self.spent.get(budget.key)
            before = spent.evictions if spent and spent.record is budget else 0
            counted = budget.disruptions_allowed if evictions is None else before + evictions
            self.spent[budget.key] = Spent(budget, counted, now)

    def _wait_on(self, budget: str, pod: Pod, why: str) -> None:
        if budget not in self.blocked_since:
            self.blocked_since[budget] = time.monotonic()
            self.run.say("drain", f"waiting on PDB {budget}: {why}", pod=pod.key)
        self.waiting_on[pod.uid] = budget

    def _waited(self, budget: str) -> None:
        waits = self.run.summary.waited_on_budgets
        waits[budget] = waits.get(budget, 0.0) + time.monotonic() - self.blocked_since.pop(budget)

    def _stuck(self, pods: list[Pod]) -> str:
        by_cause: dict[str, list[str]] = defaultdict(list)
        for pod in pods:
            terminating = pod.deleting or pod.uid in self.evicted
            by_cause["still terminating" if terminating else "eviction refused"].append(pod.key)
        lines = [f"  {cause}: {', '.join(sorted(keys))}" for cause, keys in by_cause.items()]
        lines += [f"  waiting on PDB {budget}" for budget in self.blocked_since]
        return (
            f"the drain did not finish within {self.run.settings.drain_timeout}; pods still on the nodes:\n"
            + "\n".join(lines)
        )


def _evict(run: Run, pod: Pod) -> EvictionResult:
    return run.kube.evict(pod, run.settings.grace_period)


def _annotate(run: Run, annotations: dict[str, str | None], node: str) -> None:
    run.kube.annotate(node, annotations)


def _allows_none(budget: Budget, evicting: int) -> str:
    """Why a budget allows no disruption, as the eviction API's refusal says it; ``evicting``: the
    drain's evictions its record does not show yet, counted among its healthy pods."""
    said = (
        f"The disruption budget {budget.name} needs {budget.desired_healthy} healthy pods and has "
        f"{budget.current_healthy} currently"
    )
    return f"{said}, {evicting} of them being evicted" if evicting > 0 else said


def keeping(run: Run, pods: list[Pod]) -> list[Pod]:
    """The pods keeping a node from being retired: all but DaemonSet, mirror and finished pods."""
    return [p for p in pods if run.decide(p).action is not Action.SKIP and p.phase not in _DONE]


def retire(run: Run, instances: list[str], hooks: Hooks, held: dict[str, str] | None = None) -> None:
    """Terminate drained instances without replacements (desired goes down by one each), recorded first
    in one write; their termination hooks are completed once pending, and for those ``held`` (instance
    -> node) once their nodes' last pods are gone. The Node objects are left for the kubelet and other
    tools (the node's NodeswapFenced event already says why it goes)."""
    held = held or {}
    run.lock.check()
    run.update(retired=(*run.record.retired, *instances))
    concurrently(run.aws.terminate, instances)
    for instance in instances:
        hooks.terminated(instance, held.get(instance))
        run.summary.replaced.append(instance)
        holding = " (its hook holds it until its last pods have terminated)" if instance in held else ""
        run.say("retire", f"terminated {instance}{holding}", instance=instance)


class Hooks:
    """The termination hooks of the instances nodeswap terminates. nodeswap completes only its own
    (--lifecycle-hook, or named ``nodeswap*``), once its node is drained; another tool's hook is left to
    that tool, and nodeswap waits (bounded) for the instance to go."""

    def __init__(self, run: Run) -> None:
        self.run = run
        hooks = [h for h in run.aws.hooks(run.name) if h.terminating]
        named = run.settings.lifecycle_hook
        self.own = [
            h.name for h in hooks if h.name == named or (not named and h.name.startswith(OWN_HOOK_PREFIX))
        ]
        self.others = [h.name for h in hooks if h.name not in self.own]
        # How long nodeswap's hooks hold an instance before Auto Scaling lets it go all the same.
        self.holds = min((h.heartbeat_timeout for h in hooks if h.name in self.own), default=0)
        self.leaving: set[str] = set()  # terminated by this rollout, not yet past their hooks
        self.held: dict[str, str] = {}  # leaving instance -> its node, whose last pods still terminate
        self.pending: set[str] = set()  # leaving instances the last group read showed Terminating:Wait
        self.completed: set[tuple[str, str]] = set()  # (instance, hook)
        self._read_at, self._delay = 0.0, HOOK_FIRST_LOOK_SECONDS

    def can_hold(self, pods: list[Pod], evicted: set[str]) -> bool:
        """Whether an instance whose node holds only ``pods`` can be terminated now, nodeswap's hooks
        holding it until they are gone: they must all be terminating (``evicted`` holds the uids of pods
        evicted a moment ago), within their grace periods plus HOLD_MARGIN_SECONDS of the hooks'
        heartbeat timeout (past it, Auto Scaling terminates the instance under them)."""
        grace = self.run.settings.grace_period
        return bool(pods) and all(
            (p.deleting or p.uid in evicted)
            and (p.grace_seconds if grace is None else grace) + HOLD_MARGIN_SECONDS < self.holds
            for p in pods
        )

    def terminated(self, instance: str, held_by: str | None = None) -> None:
        """``held_by``: the node whose last pods must be gone before the hook is completed."""
        if not self.leaving:  # else the group is read already, less and less often, up to every 5 s
            self.hurry()
        self.leaving.add(instance)
        if held_by is not None:
            self.held[instance] = held_by

    def hurry(self) -> None:
        """Read the group soon, then less and less often: an action becomes pending a moment after the
        termination call (or after the target groups' deregistration delay)."""
        self._read_at, self._delay = time.monotonic(), HOOK_FIRST_LOOK_SECONDS

    def leftovers(self) -> None:
        """Take over the hooks an interrupted run left waiting: the outdated instances on their way out
        whose nodes hold nothing evictable (one still holding pods is left alone: another tool may be
        draining it), or only terminating pods (held until they are gone)."""
        node_of = {n.instance_id: n.name for n in self.run.cluster.nodes()}
        for instance in outdated_now(self.run, leaving=True):
            node = node_of.get(instance)
            pods = keeping(self.run, self.run.cluster.pods_on(node)) if node else []
            if not pods:
                self.leaving.add(instance)
            elif node and self.can_hold(pods, set()):
                self.terminated(instance, node)
        self.poll()

    def poll(self) -> None:
        """Complete nodeswap's hook of each instance waiting on it whose node holds no pod any more;
        forget instances that are gone. At most one group read per AWS_RECHECK_SECONDS (Auto Scaling has
        no watch); an instance released by its node's last pod meanwhile is completed without one."""
        released = [
            i for i, node in self.held.items() if not keeping(self.run, self.run.cluster.pods_on(node))
        ]
        for instance in released:
            del self.held[instance]
        ready = {i for i in released if i in self.pending}
        if self.leaving and time.monotonic() >= self.due():
            self._read_at, self._delay = time.monotonic(), min(self._delay * 2, AWS_RECHECK_SECONDS)
            group = group_of(self.run)
            self.pending = set()
            for instance in sorted(self.leaving):
                state = group.instance(instance)
                if state is None or state.lifecycle_state not in _LEAVING:
                    self.leaving.discard(instance)
                elif state.lifecycle_state == "Terminating:Wait":
                    self.pending.add(instance)
            # A target group's deregistration delay can keep the action from being pending for minutes
            # after the termination call: asked again after the next read until it is.
            ready |= self.pending - self.held.keys()
        pending = [
            (i, hook)
            for i in sorted(ready & self.leaving)
            for hook in self.own
            if (i, hook) not in self.completed
        ]

        def complete(action: tuple[str, str]) -> bool:
            instance, hook = action
            return self.run.aws.complete(self.run.name, hook, instance)

        completed = concurrently(complete, pending)
        self.completed.update(action for action, done in zip(pending, completed, strict=True) if done)
        if self.own and not self.others:  # nodeswap's hooks completed: nothing else holds the instance
            self.leaving -= {i for i in self.leaving if all((i, hook) in self.completed for hook in self.own)}

    def due(self) -> float:
        """When the next poll is due (monotonic seconds)."""
        return self._read_at + self._delay

    def wait(self) -> None:
        """Wait until every instance this rollout terminated is past its hooks, at most --drain-timeout:
        another tool's hook that outlasts it ends at its heartbeat timeout, as reported."""
        deadline = time.monotonic() + self.run.settings.drain_timeout.total_seconds()
        while self.leaving and time.monotonic() < deadline:
            mark = self.run.cluster.mark()
            self.poll()
            if self.leaving:
                # Auto Scaling has no watch: the next look is due after the poll's delay, or once a held
                # node's last pod is gone.
                wake = min(self.due(), deadline) - time.monotonic()
                self.run.cluster.wait(mark, self.concern(), max(wake, 0.0))
        if self.leaving:
            waiting = ", ".join(sorted(self.leaving))
            owners = ", ".join(self.others) or "its hooks"
            self.run.say(
                "retire",
                f"{waiting} still wait on {owners} (another tool's hook); each ends at its heartbeat timeout",
            )

    def concern(self) -> Concern:
        """What releases a held instance: a change to its node's pods."""
        return Concern(pods_on=frozenset(self.held.values()))


def settle(run: Run, hooks: Hooks) -> None:
    """Wait until the budgets of the moved pods are fully healthy again, so the rollout ends with its
    workloads at strength, completing the last hooks meanwhile; past --drain-timeout, say which are not
    and finish anyway. The new nodes' marks go first: their pods are placed."""
    unmark(run)
    deadline = time.monotonic() + run.settings.drain_timeout.total_seconds()
    moved = frozenset(b.key for p in run.summary.moved for b in run.cluster.budgets_of(p))
    while True:
        mark = run.cluster.mark()
        hooks.poll()
        short = [b for b in run.cluster.budgets() if b.key in moved and b.current_healthy < b.expected_pods]
        if not short:
            return
        now = time.monotonic()
        if now > deadline:
            names = ", ".join(f"{b.key} ({b.current_healthy}/{b.expected_pods})" for b in short)
            run.say("settle", f"not all moved workloads are healthy yet: {names}")
            return
        wake = min(WAKE_SECONDS, deadline - now, hooks.due() - now if hooks.leaving else WAKE_SECONDS)
        run.cluster.wait(mark, Concern(budgets=moved, pods_on=hooks.concern().pods_on), wake)


def unmark(run: Run) -> None:
    """Remove this rollout's scale-down marks (listed afresh: a mark set a moment ago counts)."""
    marked = [n.name for n in run.kube.nodes() if n.annotations.get(MARK_ANNOTATION) == run.record.run]
    unmarks: dict[str, str | None] = {SCALE_DOWN_DISABLED: None, MARK_ANNOTATION: None}
    concurrently(functools.partial(_annotate, run, unmarks), marked)


def restore(run: Run) -> None:
    """Undo the rollout's marks on the group: MaxSize, the processes nodeswap suspended (only those);
    then remove the record. The nodes' scale-down marks are gone already (``unmark``)."""
    group = group_of(run)
    original = run.record.capacity
    # If Auto Scaling replaced an old instance itself, desired is above the original: keep MaxSize
    # large enough for it and say so, rather than terminate a node that was never drained.
    max_size = max(original.max_size, group.desired)
    run.summary.max_size_changed = group.max_size != original.max_size
    if group.max_size != max_size:
        run.aws.set_capacity(run.name, max_size=max_size)
    run.aws.resume(run.name, list(run.record.suspended))
    run.store.remove(run.name)
    message = f"restored MaxSize {max_size} and the processes nodeswap suspended"
    if group.desired != original.desired:
        message += f"; desired is {group.desired}, it was {original.desired}: set it back when convenient"
    run.say("restore", message)
    run.summary.launch = group.launch.describe()
    run.summary.image = run.aws.image_of(group.launch)
