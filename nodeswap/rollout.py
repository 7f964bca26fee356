"""The rollout engine: replace the outdated instances of a group without dropping a workload below its
PodDisruptionBudget, resumable from whatever state the systems are in, undone when a wave fails.

IMPORTANT, the order of side effects (``GroupRollout._replace``), and why:
1. take the group's lock, then write the record (``record``) before changing anything: the selection,
   the original capacity and launch template, the processes nodeswap will suspend, so any later run
   can finish or undo the rollout; bake the new launch template version (--ami) only after that;
2. suspend the processes that would fight the rollout (AZRebalance would terminate new instances to
   rebalance zones), then surge: new capacity first, so evicted pods have somewhere to go;
3. wait until the new nodes are Ready, and keep cluster-autoscaler from removing them; a canary wave
   must also run the group's DaemonSets, Ready;
4. fence all old nodes of the wave (taint + cordon) before evicting anything, so no evicted pod lands
   on a node that is about to be drained next;
5. evict through the Eviction API, which lets the PDBs gate every move;
6. terminate an instance only once its node holds nothing evictable, and complete nodeswap's
   termination hook only then; never delete the Node object (the termination handler looks it up);
7. restore MaxSize, the processes nodeswap suspended (only those) and this rollout's marks; remove
   the record, then the lock.
A wave that fails (new nodes never Ready, a drain past --drain-timeout, an unhealthy canary) is rolled
back as `abort` does (``undo``), unless --on-failure keep leaves it for inspection. An AWS action the
IAM policy does not allow stops the run where it stands, recorded (``AccessDenied``): a re-run once it
is granted continues.

Nothing is kept only in memory: a re-run reads the record and the systems and continues.
The engine emits events; the CLI renders them.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from nodeswap.audit import INSTANCE_TYPE_LABELS
from nodeswap.aws import Aws
from nodeswap.cache import Cache
from nodeswap.errors import AccessDenied, OperationError, RefusedError, RolledBack, UsageError
from nodeswap.kube import Kube, fenced
from nodeswap.lease import Lock
from nodeswap.model import Blocker, Group, Snapshot
from nodeswap.plan import GroupPlan, plan_group, surge_change
from nodeswap.record import Capacity, Record, RecordStore, Template, replace_command
from nodeswap.run import Emit, Event, RolloutSettings, Run, Summary
from nodeswap.steps import (
    FIGHTING_PROCESSES,
    Drain,
    Hooks,
    StepFailed,
    check_canary,
    fence,
    group_of,
    join,
    next_wave,
    restore,
    settle,
    surge,
)
from nodeswap.undo import roll_back

T = TypeVar("T")


def rollouts_for(
    aws: Aws, kube: Kube, groups: list[Group], settings_for: Callable[[str], RolloutSettings], emit: Emit
) -> dict[str, GroupRollout]:
    rollouts = {group.name: GroupRollout(aws, kube, settings_for(group.name), emit) for group in groups}
    for group in groups:
        if rollouts[group.name].settings.ami and group.mixed:
            raise UsageError(
                f"group {group.name} takes its launch template from a mixed instances policy, which --ami "
                "does not update yet",
                "create the launch template version, point the policy at it, then run without --ami",
            )
    return rollouts


def plan_groups(
    aws: Aws, kube: Kube, groups: list[Group], settings_for: Callable[[str], RolloutSettings], emit: Emit
) -> tuple[dict[str, GroupRollout], list[GroupPlan]]:
    """Plan every group, reading only: what `nodeswap plan` reports and `replace` acts on."""
    rollouts = rollouts_for(aws, kube, groups, settings_for, emit)
    snapshot = while_described(aws, groups, kube.snapshot)
    return rollouts, [rollouts[group.name].plan(group, snapshot) for group in groups]


def while_described(aws: Aws, groups: list[Group], read: Callable[[], T]) -> T:
    """``read`` (the cluster) while the groups' instances are described, which the plans need too: the
    two APIs answer apart, and at hundreds of nodes each read takes most of a second."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="describe") as pool:
        described = pool.submit(lambda: [aws.with_details(group) for group in groups])
        found = read()
        described.result()  # the plans find the instances described (or the same error is raised)
    return found


def refusals(plans: list[GroupPlan]) -> list[tuple[str, Blocker]]:
    """The blockers that stop a run."""
    return [(p.group.name, b) for p in plans for b in p.blockers]


def replace_groups(
    aws: Aws,
    kube: Kube,
    groups: list[Group],
    settings_for: Callable[[str], RolloutSettings],
    emit: Emit,
    *,
    confirm: Callable[[list[GroupPlan]], None] = lambda plans: None,
) -> list[Summary]:
    """Lock every group (a concurrent run is refused before anything is planned), plan them, refuse if
    any plan has a blocker (nothing changed yet), then replace the groups one after the other. The cluster
    is listed once, for the plans and every rollout, and watched from then on."""
    rollouts = rollouts_for(aws, kube, groups, settings_for, emit)
    dry_run = any(r.settings.dry_run for r in rollouts.values())
    with ExitStack() as stack:
        locks = {} if dry_run else {name: stack.enter_context(r.lock(name)) for name, r in rollouts.items()}
        if any(lock.contended for lock in locks.values()):
            # Another run held a lock while this one waited for it: the groups may have changed since
            # they were described (that run may have finished its rollout, or made a launch template
            # version), so they are read again.
            aws.forget_versions()
            groups = aws.groups([group.name for group in groups], full=True)
        cluster = Cache(kube)
        snapshot = while_described(aws, groups, lambda: stack.enter_context(cluster).snapshot())
        plans = [rollouts[group.name].plan(group, snapshot) for group in groups]
        for plan in plans:
            rollouts[plan.group.name].announce(plan)
        blockers = refusals(plans)
        if blockers:
            raise RefusedError(blockers)
        todo = [p for p in plans if p.outdated or rollouts[p.group.name].record is not None]
        if dry_run or not todo:
            return [Summary(p.group.name, nothing_to_do=not p.outdated, dry_run=dry_run) for p in plans]
        confirm(todo)  # raises unless confirmed
        return [rollouts[plan.group.name].run(plan, locks[plan.group.name], cluster) for plan in todo]


class GroupRollout:
    """The rollout of one group with its settings."""

    def __init__(self, aws: Aws, kube: Kube, settings: RolloutSettings, emit: Emit) -> None:
        self.aws, self.kube, self.settings, self.emit = aws, kube, settings, emit
        self.run_id = uuid.uuid4().hex[:8]
        self.store = RecordStore(aws, kube)
        self.record: Record | None = None  # an interrupted rollout's, as read by plan()

    def lock(self, group: str) -> Lock:
        def say(message: str) -> None:
            self.emit(Event(group, "lock", message))

        return Lock(self.kube, group, self.run_id, self.settings.lock_duration, say)

    def plan(self, group: Group, snapshot: Snapshot) -> GroupPlan:
        """The plan `nodeswap plan` prints and `replace` acts on: read-only. An interrupted rollout is
        continued as it was recorded: options that contradict its record are a blocker, and what only
        describes a group before a rollout (instances launching, MaxSize raised) is not."""
        self.record = self.store.load(group)
        cutoff = self.record.launched_before if self.record else None
        group = self.aws.with_details(group)
        reported = {n.labels.get(INSTANCE_TYPE_LABELS[0]) for n in snapshot.nodes if n.ready}
        plan = plan_group(
            group,
            snapshot,
            settings=dataclasses.replace(self.settings.plan, launched_before=cutoff),
            now=datetime.now(UTC),
            sizes=self.aws.instance_sizes([t for t in group.instance_types if t not in reported]),
            surge=self.settings.surge,
            canary=self.settings.canary if self.record is None else None,
            recorded_desired=self.record.capacity.desired if self.record else None,
        )
        if self.record is None:
            return plan
        blockers = [b for b in plan.blockers if b.scope == "workload"]
        asked, recorded = self.settings.selection(), self.record.selection
        if asked != recorded:
            blockers.insert(
                0,
                Blocker(
                    "differs-from-record",
                    f"group {group.name}",
                    f"an interrupted rollout (started {self.record.started:%Y-%m-%d %H:%M} UTC, phase "
                    f"{self.record.phase}) was asked for {recorded.describe()}; this run asks for "
                    f"{asked.describe()}",
                    f"continue it: {self.record.command()}; or undo it: nodeswap abort --asg {group.name}",
                    scope="workload",
                ),
            )
        return dataclasses.replace(plan, blockers=tuple(blockers))

    def announce(self, plan: GroupPlan) -> None:
        name = plan.group.name
        if self.record is not None:
            message = (
                f"continuing the rollout recorded on the group (run {self.record.run}, started "
                f"{self.record.started:%H:%M:%S} UTC, phase {self.record.phase}; original "
                f"{self.record.capacity.describe()})"
            )
            self.emit(Event(name, "resume", message))
        elif not plan.outdated:
            self.emit(Event(name, "plan", "nothing to replace: every instance is up to date"))
            return
        for instance in plan.outdated:
            node = plan.nodes.get(instance.id)
            where = node.name if node else "no node"
            message = f"replace {instance.id} ({where}): {plan.reasons[instance.id]}"
            self.emit(Event(name, "plan", message, {"instance": instance.id}))
        message = f"{len(plan.evictions)} pods to evict"
        if plan.surge:  # a resumed run adds only what its recorded capacity and its next waves need
            change = surge_change(plan.desired_before, plan.group.desired, plan.surge)
            message += f"; surge {plan.surge} ({change})"
        self.emit(Event(name, "plan", message, {"evictions": len(plan.evictions), "surge": plan.surge}))
        for warning in plan.warnings:
            message = f"{warning.subject}: {warning.cause} -> {warning.remedy}"
            self.emit(Event(name, "audit", message, {"warning": warning.check}))
        if plan.estimate is not None:
            estimate = plan.estimate
            message = f"estimated {estimate.seconds:.0f} s; critical path: {estimate.critical_path}"
            self.emit(Event(name, "plan", message, {"estimate_seconds": round(estimate.seconds, 1)}))
        for blocker in plan.blockers:
            message = f"{blocker.subject}: {blocker.cause} -> {blocker.remedy}"
            self.emit(Event(name, "preflight", message, {"blocker": blocker.subject, "check": blocker.check}))

    # ----- the rollout, in order ---------------------------------------------------------------

    def run(self, plan: GroupPlan, lock: Lock, cluster: Cache) -> Summary:
        summary = Summary(plan.group.name)
        name = plan.group.name
        group = self.aws.groups([name])[0]
        try:
            recorded = self.store.load(group)
            run = self._run(recorded or self._new_record(group, plan), lock, cluster, summary)
            run.join_seconds = plan.estimate.join_seconds if plan.estimate else 0.0
            try:
                self._replace(run, group, resumed=recorded is not None)
            except StepFailed as failure:
                self._failed(run, failure)
        except AccessDenied as denied:
            # Not rolled back (the undo needs the same kind of permissions): the rollout stops where
            # it stands, recorded, and goes on once the action is granted.
            raise denied.mid_rollout(
                f"the rollout of {name} stopped there; what it changed is recorded on the group "
                f"(nodeswap status --asg {name} shows it)",
                f"continue it with {replace_command(name, self.settings.selection())}, or undo it "
                f"with nodeswap abort --asg {name}",
            ) from denied
        done = f"replaced {len(summary.replaced)} nodes, evicted {summary.evicted} pods"
        self.emit(Event(plan.group.name, "done", done, summary.as_dict()))
        return summary

    def _run(self, record: Record, lock: Lock, cluster: Cache, summary: Summary) -> Run:
        return Run(self.aws, self.kube, self.settings, self.emit, self.store, record, lock, cluster, summary)

    def _new_record(self, group: Group, plan: GroupPlan) -> Record:
        launch = group.launch
        launched = [i.launched_at for i in plan.outdated if i.launched_at is not None]
        selection = self.settings.selection()
        record = Record(
            group=group.name,
            run=self.run_id,
            started=datetime.now(UTC),
            selection=selection,
            launched_before=max(launched)
            if launched and (selection.replace_all or selection.older_than_seconds)
            else None,
            capacity=Capacity(min_size=group.min_size, max_size=group.max_size, desired=group.desired),
            template=Template(
                id=launch.template_id,
                asked=group.launch_asked or launch.version or "",
                version=launch.version or "",
            )
            if launch.template_id
            else None,
            suspended=tuple(p for p in FIGHTING_PROCESSES if p not in group.suspended),
            before=tuple(i.id for i in group.instances),
        )
        self.store.save(record)
        return record

    def _replace(self, run: Run, group: Group, *, resumed: bool) -> None:
        """``group`` as read as the run started; ``resumed``: the rollout was recorded before it."""
        hooks = Hooks(run)
        if resumed:
            hooks.leftovers()  # a killed run may have left hooks waiting
        if self.settings.ami:
            self._bake(run, group)
        cap = self.settings.max_unavailable
        # Waves of --surge instances (default: all at once); an interrupted wave is finished first.
        while True:
            group = group_of(run)
            wave, canary = next_wave(run, group)
            if not wave:
                break
            with self._phase(run, "surge"):
                surge(run, group, len(wave))
            with self._phase(run, "join"):
                ready = join(run)
                if canary:
                    check_canary(run, ready)
            nodes = {n.instance_id: n.name for n in run.cluster.nodes() if n.instance_id in wave}
            with self._phase(run, "fence"):
                fence(run, [n for n in nodes.values()])
            with self._phase(run, "drain"):
                Drain(run, hooks)(wave, nodes, cap or len(wave))
                if canary:
                    check_canary(run, ready)
        with self._phase(run, "settle"):
            settle(run, hooks)
            hooks.wait()
        with self._phase(run, "restore"):
            restore(run)

    @contextmanager
    def _phase(self, run: Run, phase: str) -> Iterator[None]:
        run.lock.check()
        if run.record.phase != phase:
            run.update(phase=phase)
        started = time.monotonic()
        run.say(phase, f"{phase} started")
        try:
            yield
        finally:
            run.summary.phases[phase] = run.summary.phases.get(phase, 0.0) + time.monotonic() - started

    def _bake(self, run: Run, group: Group) -> None:
        """Point the group at a launch template version with the new AMI, unless it already is (``group``
        as read a moment before). The version is recorded before the group points at it, so an undo can
        always point it back."""
        ami = self.settings.ami or ""
        if self.aws.image_of(group.launch) == ami:
            return
        baked = run.record.baked
        if baked is None or self.aws.image_of(dataclasses.replace(group.launch, version=baked)) != ami:
            baked = self.aws.create_version(group, ami)
            run.update(baked=baked)
        self.aws.point_at(run.name, group.launch.template_id or "", baked)
        run.say("bake", f"created launch template {group.launch.template_id} version {baked} with {ami}")

    def abort(self, group: Group, lock: Lock) -> bool:
        """Undo the group's rollout from whatever point it reached (``undo``); False if none is recorded,
        after un-fencing any node nodeswap left fenced."""
        with Cache(self.kube) as cluster:
            record = self.store.load(group)
            if record is None:
                ids = {i.id for i in group.instances}
                for node in [n for n in cluster.nodes() if n.instance_id in ids and fenced(n)]:
                    self.kube.unfence(node)
                    self.emit(Event(group.name, "abort", f"un-fenced {node.name}, left fenced by nodeswap"))
                return False
            run = self._run(record, lock, cluster, Summary(group.name))
            self.emit(
                Event(
                    group.name,
                    "abort",
                    f"undoing the rollout started {record.started:%Y-%m-%d %H:%M:%S} UTC "
                    f"(run {record.run}, phase {record.phase})",
                )
            )
            try:
                roll_back(run)
            except AccessDenied as denied:
                raise denied.mid_rollout(
                    f"the undo of {group.name} stopped there; the rollout stays recorded on the group "
                    f"(nodeswap status --asg {group.name} shows it)",
                    f"finish the undo with nodeswap abort --asg {group.name}",
                ) from denied
        self.emit(Event(group.name, "done", "aborted: the group is back at its recorded capacity"))
        return True

    def _failed(self, run: Run, failure: StepFailed) -> None:
        """A wave failed: roll it back (the default), or keep everything as it is for inspection."""
        name = run.name
        if self.settings.on_failure == "keep":
            run.update(phase="failed", failure=failure.message)
            raise OperationError(
                f"{failure.message}\nkept as it is for inspection (--on-failure keep): the group is surged "
                "and the wave's old nodes are fenced",
                f"{failure.remedy}; see nodeswap status --asg {name}; then continue with "
                f"{run.record.command()}, or undo with nodeswap abort --asg {name}",
            ) from failure
        run.say("rollback", f"{failure.message}\nrolling back")
        run.update(failure=failure.message)
        roll_back(run)
        raise RolledBack(
            f"{failure.message}\nrolled back: the group is at its original capacity and launches what it "
            "launched before; the old nodes that were not replaced are serving again",
            f"{failure.remedy}, then run the rollout again",
        ) from failure
