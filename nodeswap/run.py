"""What one group's rollout carries from step to step: its settings, its record and lock, the events it
emits and the summary it returns. The steps (``steps``), the undo (``undo``) and the order of both
(``rollout``) take a ``Run``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

from nodeswap.aws import Aws
from nodeswap.cache import Cache
from nodeswap.kube import Kube
from nodeswap.lease import Lock
from nodeswap.model import Pod
from nodeswap.plan import PodDecision, Settings, decide
from nodeswap.record import Record, RecordStore, Selection

Emit = Callable[["Event"], None]
OnFailure = Literal["rollback", "keep"]
T = TypeVar("T")
R = TypeVar("R")
# Requests made at once for independent objects (a pass's evictions, a wave's fences and terminations),
# as kubectl drain evicts a node's pods together: a wave of hundreds of nodes is paced by the cluster,
# not by round trips one after the other. Bounded, so the API servers see a steady load, not a burst.
IN_FLIGHT = 16
# One pool for the whole process: a drain makes hundreds of passes, and starting IN_FLIGHT threads for
# each cost more than its requests. Its threads start on first use and idle between passes.
_POOL = ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="request")


def concurrently(action: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``action`` of every item, IN_FLIGHT at a time; the results in the items' order. An error is raised
    once every action has ended, so none is left running behind the caller. ``action`` must not call
    ``concurrently`` itself (it would wait on the pool it holds a thread of)."""
    todo = list(items)
    if len(todo) <= 1:
        return [action(item) for item in todo]
    futures = [_POOL.submit(action, item) for item in todo]
    wait(futures)
    return [future.result() for future in futures]


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
    canary: int | None = None  # a first wave of this many instances, checked before the rest
    max_unavailable: int | None = None  # old nodes drained at once; None: the whole wave
    on_failure: OnFailure = "rollback"
    dry_run: bool = False

    @property
    def ami(self) -> str | None:
        return self.plan.image

    def selection(self) -> Selection:
        older_than = self.plan.older_than
        return Selection(
            ami=self.plan.image,
            replace_all=self.plan.replace_all,
            older_than_seconds=int(older_than.total_seconds()) if older_than is not None else None,
            surge=self.surge,
            canary=self.canary,
        )


@dataclass
class Summary:
    group: str
    replaced: list[str] = field(default_factory=list)
    evicted: int = 0
    phases: dict[str, float] = field(default_factory=dict)
    moved: list[Pod] = field(default_factory=list)  # the evicted pods, to see their workloads healthy again
    # How long each budget held evictions back, summed over the times it refused.
    waited_on_budgets: dict[str, float] = field(default_factory=dict)
    nothing_to_do: bool = False
    dry_run: bool = False
    launch: str | None = None  # what the group launches at the end ("launch template lt-1 version 3")
    image: str | None = None
    max_size_changed: bool = False

    @property
    def paced_by(self) -> str | None:
        """The budget that held the rollout back longest."""
        return max(self.waited_on_budgets, key=self.waited_on_budgets.__getitem__, default=None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "dry_run": self.dry_run,
            "nodes_replaced": len(self.replaced),
            "instances_replaced": self.replaced,
            "pods_evicted": self.evicted,
            "phase_seconds": {k: round(v, 2) for k, v in self.phases.items()},
            "waited_on_budgets_seconds": {k: round(v, 2) for k, v in self.waited_on_budgets.items()},
            "paced_by": self.paced_by,
            "launch": self.launch,
            "image": self.image,
            "max_size_changed": self.max_size_changed,
            "nothing_to_do": self.nothing_to_do,
        }


@dataclass
class Run:
    """One group's rollout (or its undo) in progress."""

    aws: Aws
    kube: Kube
    settings: RolloutSettings
    emit: Emit
    store: RecordStore
    record: Record
    lock: Lock
    cluster: Cache  # what the rollout reads from the cluster, kept current
    summary: Summary
    join_seconds: float = 0.0  # how long the group's instances took from launch to a Ready node
    _decided: dict[str, tuple[Pod, PodDecision]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.record.group

    @property
    def selection(self) -> Settings:
        """What to replace: the settings, with the launch-time cutoff the rollout recorded at its start."""
        return dataclasses.replace(self.settings.plan, launched_before=self.record.launched_before)

    def decide(self, pod: Pod) -> PodDecision:
        """``plan.decide`` under this run's settings, kept while the pod's record is the one decided on
        (the cache replaces a pod's record when it changes): a drain looks at every pod of its nodes on
        each of hundreds of passes."""
        kept = self._decided.get(pod.uid)
        if kept is None or kept[0] is not pod:
            kept = self._decided[pod.uid] = (pod, decide(pod, self.settings.plan))
        return kept[1]

    def say(self, phase: str, message: str, **data: Any) -> None:
        self.emit(Event(self.name, phase, message, data))

    def update(self, **changes: Any) -> None:
        """Change the record and write it, before acting on the change."""
        self.record = self.record.model_copy(update=changes)
        self.store.save(self.record)
