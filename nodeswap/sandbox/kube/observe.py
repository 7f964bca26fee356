"""What the sandbox watches for on behalf of tests and rehearsals: availability lost during a rollout.

- ``pdb_violations``: every interval during which a PDB's currentHealthy was below its desiredHealthy,
  counted once the PDB had first been satisfied (a workload still starting up is not a violation);
- ``lost_pods``: pods that were serving (not being deleted) when their node's machine stopped under them,
  or when pod GC deleted them, their Node deleted, while the machine still ran them;
- ``under_strength``: per Deployment/StatefulSet, the intervals with fewer Ready replicas than desired,
  again once it had first been at full strength.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodeswap.sandbox.clock import Clock

Object = dict[str, Any]


@dataclass
class _Intervals:
    """Open/closed intervals of one condition on one object, armed once the object is first healthy."""

    armed: bool = False
    intervals: list[dict[str, Any]] = field(default_factory=list)

    def update(self, bad: bool, clock: Clock, detail: dict[str, Any]) -> None:
        open_interval = self.intervals[-1] if self.intervals and self.intervals[-1]["end"] is None else None
        if not bad:
            self.armed = True
            if open_interval is not None:
                open_interval["end"] = clock.now()
                open_interval["ended"] = clock.wall().isoformat()
            return
        if not self.armed:
            return
        if open_interval is None:
            self.intervals.append(
                {"start": clock.now(), "started": clock.wall().isoformat(), "end": None, **detail}
            )
        else:
            open_interval.update(detail)

    def report(self, now: float) -> list[dict[str, Any]]:
        return [
            {
                **{k: v for k, v in interval.items() if k not in ("start", "end")},
                "seconds": round(
                    (interval["end"] if interval["end"] is not None else now) - interval["start"], 3
                ),
                "ongoing": interval["end"] is None,
            }
            for interval in self.intervals
        ]


class Observer:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._pdbs: dict[tuple[str, str], _Intervals] = {}
        self._workloads: dict[tuple[str, str, str], _Intervals] = {}
        self.lost_pods: list[dict[str, Any]] = []

    def pdb(self, namespace: str, name: str, current: int, desired: int) -> None:
        detail = {"current_healthy": current, "desired_healthy": desired}
        self._pdbs.setdefault((namespace, name), _Intervals()).update(current < desired, self.clock, detail)

    def workload(self, kind: str, namespace: str, name: str, ready: int, desired: int) -> None:
        detail = {"ready": ready, "desired": desired}
        self._workloads.setdefault((kind, namespace, name), _Intervals()).update(
            ready < desired, self.clock, detail
        )

    def lost(self, pod: Object, node: str, reason: str) -> None:
        meta = pod["metadata"]
        owners = [
            f"{o['kind']}/{o['name']}" for o in meta.get("ownerReferences") or [] if o.get("controller")
        ]
        self.lost_pods.append(
            {
                "namespace": meta.get("namespace"),
                "name": meta["name"],
                "uid": meta["uid"],
                "owner": owners[0] if owners else None,
                "node": node,
                "reason": reason,
                "time": self.clock.wall().isoformat(),
            }
        )

    def report(self) -> dict[str, Any]:
        now = self.clock.now()
        violations = [
            {"namespace": ns, "name": name, **interval}
            for (ns, name), tracked in self._pdbs.items()
            for interval in tracked.report(now)
        ]
        under = [
            {"kind": kind, "namespace": ns, "name": name, **interval}
            for (kind, ns, name), tracked in self._workloads.items()
            for interval in tracked.report(now)
        ]
        return {"pdb_violations": violations, "lost_pods": list(self.lost_pods), "under_strength": under}
