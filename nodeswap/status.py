"""Where a group stands: whether a rollout is running or interrupted, how far it got, what it changed,
and the exact commands to continue or undo it. Read-only; what `nodeswap status`, `plan` and an
interrupted `replace` show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from nodeswap.aws import Aws
from nodeswap.kube import Kube, fenced
from nodeswap.lease import holder_gone, lock_name
from nodeswap.model import Group
from nodeswap.record import Record, RecordStore

State = Literal["idle", "running", "interrupted"]
_WAITING = ("Pending:Wait", "Terminating:Wait")


@dataclass(frozen=True)
class LockHolder:
    holder: str
    renewed: datetime | None  # by the holder's clock
    duration: int

    @property
    def live(self) -> bool:
        """Whether the holder looks alive: renewed within its duration (by the holder's own timestamp,
        good enough to show; taking a lock over never trusts it) and not a dead process on this host."""
        if holder_gone(self.holder) or self.renewed is None:
            return False
        return datetime.now(UTC) - self.renewed < timedelta(seconds=self.duration)


@dataclass(frozen=True)
class GroupStatus:
    group: Group
    record: Record | None
    lock: LockHolder | None
    fenced: tuple[str, ...]  # the group's nodes carrying nodeswap's taint
    waiting: tuple[tuple[str, str], ...]  # (instance, lifecycle state) held by a lifecycle hook

    @property
    def state(self) -> State:
        if self.lock is not None and self.lock.live:
            return "running"
        return "interrupted" if self.record is not None or self.fenced else "idle"

    @property
    def continue_command(self) -> str | None:
        return self.record.command() if self.record is not None else None

    @property
    def abort_command(self) -> str | None:
        return f"nodeswap abort --asg {self.group.name}" if self.state == "interrupted" else None

    def lines(self) -> list[str]:
        """The state in a few lines, for a person: what is changed, and both ways on."""
        group, record = self.group, self.record
        if self.state == "idle":
            return [f"{group.name}: no rollout in progress (desired {group.desired}, max {group.max_size})"]
        head = f"{group.name}: rollout {self.state}"
        if record is not None:
            head += (
                f" in phase {record.phase} (run {record.run}, started {record.started:%Y-%m-%d %H:%M:%S} UTC)"
            )
        lines = [head]
        if record is not None:
            was = record.capacity
            lines.append(
                f"  capacity: desired {group.desired} (was {was.desired}), max {group.max_size} "
                f"(was {was.max_size}), min {group.min_size}"
            )
            lines.append(
                f"  launches: {group.launch.describe()}"
                + (f" (baked {record.baked})" if record.baked else "")
            )
            if record.failure:
                lines.append(f"  failed: {record.failure}")
        if self.fenced:
            lines.append(f"  fenced nodes ({len(self.fenced)}): {', '.join(self.fenced)}")
        if group.suspended:
            ours = set(record.suspended) if record else set()
            lines.append(
                "  suspended: "
                + ", ".join(f"{p}{' (by nodeswap)' if p in ours else ''}" for p in sorted(group.suspended))
            )
        for instance, state in self.waiting:
            lines.append(f"  {instance} waits in {state} on a lifecycle hook")
        if self.lock is not None:
            lines.append(
                f"  lock: held by {self.lock.holder}, renewed "
                f"{self.lock.renewed:%H:%M:%S} UTC for {self.lock.duration} s"
                if self.lock.renewed
                else f"  lock: held by {self.lock.holder}"
            )
        if self.state == "interrupted":
            if self.continue_command:
                lines.append(f"  continue: {self.continue_command}")
            lines.append(f"  undo:     {self.abort_command}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        group, record = self.group, self.record
        return {
            "group": group.name,
            "state": self.state,
            "phase": record.phase if record else None,
            "run": record.run if record else None,
            "started": record.started.isoformat() if record else None,
            "options": record.selection.flags() if record else None,
            "failure": record.failure if record else None,
            "capacity": {"min": group.min_size, "max": group.max_size, "desired": group.desired},
            "recorded_capacity": record.capacity.model_dump() if record else None,
            "launch": group.launch.describe(),
            "baked_version": record.baked if record else None,
            "launched": list(record.launched) if record else [],
            "retired": list(record.retired) if record else [],
            "fenced_nodes": list(self.fenced),
            "suspended_processes": sorted(group.suspended),
            "suspended_by_nodeswap": list(record.suspended) if record else [],
            "lock": {
                "holder": self.lock.holder,
                "renewed": self.lock.renewed.isoformat() if self.lock.renewed else None,
                "duration_seconds": self.lock.duration,
                "live": self.lock.live,
            }
            if self.lock
            else None,
            "hooks_waiting": [{"instance": i, "state": s} for i, s in self.waiting],
            "continue_command": self.continue_command if self.state == "interrupted" else None,
            "abort_command": self.abort_command,
        }


def group_status(aws: Aws, kube: Kube, group: Group) -> GroupStatus:
    record = RecordStore(aws, kube).load(group)
    lease = kube.lease(lock_name(group.name))
    lock = (
        LockHolder(
            lease.spec.holder_identity or "", lease.spec.renew_time, lease.spec.lease_duration_seconds or 0
        )
        if lease is not None
        else None
    )
    ids = {i.id for i in group.instances}
    fenced_nodes = tuple(sorted(n.name for n in kube.nodes() if n.instance_id in ids and fenced(n)))
    waiting = tuple((i.id, i.lifecycle_state) for i in group.instances if i.lifecycle_state in _WAITING)
    return GroupStatus(group, record, lock, fenced_nodes, waiting)
