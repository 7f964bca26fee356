"""A list-and-watch cache of what a rollout reads from the cluster (nodes, pods, PodDisruptionBudgets),
shared by plan, join, drain and settle; client-go's informers are the model.

Each kind is listed once, then kept current by a watch that resumes from its last version and lists
again after a 410 or a failure. Objects are kept as nodeswap's lean records, parsed from the API's JSON
(only the fields nodeswap reads); pods are indexed by node and by owner. A change is recorded only when
a record changes (a status heartbeat that changes nothing nodeswap reads wakes no one), and a wait says
what concerns it (any node, the pods on its nodes, the budgets it waits on), so it sleeps through the
rest of the cluster's churn.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from types import TracebackType
from typing import Any, get_args

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from nodeswap import parse
from nodeswap.audit import Selecting
from nodeswap.errors import OperationError
from nodeswap.kube import Kube
from nodeswap.model import Budget, Node, Owner, Pod, Snapshot
from nodeswap.parse import Kind, Record

# A watch that failed (the API server struggling, a version too old to resume from) is listed again
# after this long, doubling to RELIST_MAX_SECONDS while it keeps failing.
RELIST_SECONDS, RELIST_MAX_SECONDS = 0.5, 8.0
# The changes kept for waits to look back on; a wait that fell further behind simply wakes.
LOG_SIZE = 10_000
OwnerKey = tuple[str, Owner]  # (namespace, controller): owners are named within a namespace


@dataclass(frozen=True)
class Change:
    kind: str  # "nodes", "pods", "budgets"; "all" after a relist, which may hide any change
    subject: str | None  # the node's name; the node a pod is (or was) on; the budget's key


@dataclass(frozen=True)
class Concern:
    """What a wait wakes for."""

    nodes: bool = False  # a change to any node
    pods_on: frozenset[str] = frozenset()  # a change to a pod on one of these nodes
    budgets: frozenset[str] = frozenset()  # a change to one of these budgets ("namespace/name")

    def __call__(self, change: Change) -> bool:
        if change.kind == "nodes":
            return self.nodes
        if change.kind == "pods":
            return change.subject in self.pods_on
        if change.kind == "budgets":
            return change.subject in self.budgets
        return True


class Cache:
    """Use as a context manager: entering lists every kind (errors surface there, as from any list)
    and starts the watches; leaving stops them."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._changed = threading.Condition()
        self._nodes: dict[str, Node] = {}
        self._pods: dict[str, Pod] = {}  # by uid
        self._on: dict[str | None, dict[str, Pod]] = defaultdict(dict)  # node -> uid -> pod
        self._owned: dict[OwnerKey, set[str]] = defaultdict(set)  # owner -> uids
        self._budgets: dict[str, Budget] = {}
        self._selecting: Selecting | None = None  # built again after a budget's selector changes
        self._selected: dict[str, tuple[Pod, Selecting, tuple[str, ...]]] = {}  # uid -> budgets' keys
        self._log: list[Change] = []
        self._logged = 0  # the number of changes ever logged: the log holds the last len(_log)
        self._stop = threading.Event()
        self._audited: dict[str, Any] | None = None

    def __enter__(self) -> Cache:
        for kind in get_args(Kind):
            records, version = self.kube.listed(kind)
            self._replace(kind, records)
            threading.Thread(
                target=self._follow, args=(kind, version), daemon=True, name=f"watch-{kind}"
            ).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()

    # ----- reads -------------------------------------------------------------------------------

    def nodes(self) -> list[Node]:
        with self._changed:
            return list(self._nodes.values())

    def node(self, name: str) -> Node | None:
        with self._changed:
            return self._nodes.get(name)

    def pods_on(self, node: str) -> list[Pod]:
        with self._changed:
            return list(self._on.get(node, {}).values())

    def daemonsets_off(self, nodes: set[str]) -> set[OwnerKey]:
        """The DaemonSets with a pod on some node other than ``nodes``."""
        with self._changed:
            return {
                key
                for key, uids in self._owned.items()
                if key[1].kind == "DaemonSet" and any(self._pods[uid].node not in nodes for uid in uids)
            }

    def budgets(self) -> list[Budget]:
        with self._changed:
            return list(self._budgets.values())

    def budgets_of(self, pod: Pod) -> list[Budget]:
        """The budgets selecting the pod, as they are now."""
        with self._changed:
            if self._selecting is None:
                self._selecting = Selecting(self._budgets.values())
            # Kept while the pod's record and the budgets' selectors are the ones looked up: a drain asks
            # for every pod of its nodes on each of hundreds of passes.
            kept = self._selected.get(pod.uid)
            if kept is None or kept[0] is not pod or kept[1] is not self._selecting:
                kept = self._selected[pod.uid] = (
                    pod,
                    self._selecting,
                    self._selecting(pod.namespace, pod.labels),
                )
            return [self._budgets[key] for key in kept[2]]

    def snapshot(self) -> Snapshot:
        """What the planner reads: the cached kinds, and what only the audit reads (listed once)."""
        if self._audited is None:
            self._audited = self.kube.audited()
        with self._changed:
            return parse.kept(
                Snapshot(
                    nodes=tuple(self._nodes.values()),
                    pods=tuple(self._pods.values()),
                    budgets=tuple(self._budgets.values()),
                    **self._audited,
                )
            )

    # ----- waiting -----------------------------------------------------------------------------

    def mark(self) -> int:
        """Where the changes stand now: read the cache, then wait for changes after the mark."""
        with self._changed:
            return self._logged

    def wait(self, since: int, concern: Concern, seconds: float) -> None:
        """Return once a change after ``since`` concerns the caller, or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                first = self._logged - len(self._log)
                if since < first or any(concern(c) for c in self._log[since - first :]):
                    return
                since = self._logged
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    # ----- keeping current ---------------------------------------------------------------------

    def _follow(self, kind: Kind, version: str) -> None:
        delay = RELIST_SECONDS
        while not self._stop.is_set():
            try:
                for event, record, reached in self.kube.watched(kind, version):
                    if self._stop.is_set():
                        return
                    version = reached
                    if record is not None:
                        self._apply(kind, event, record)
                    delay = RELIST_SECONDS
            except (ApiException, HTTPError, OSError, ValueError):
                # Expired (410), refused or cut: list again, which may hide changes from the waits'
                # view, so every wait wakes to look.
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, RELIST_MAX_SECONDS)
                try:
                    records, version = self.kube.listed(kind)
                except OperationError:  # the API server is still down: keep trying until stopped
                    continue
                self._replace(kind, records)

    def _replace(self, kind: Kind, records: list[Record]) -> None:
        with self._changed:
            if kind == "nodes":
                self._nodes = {n.name: n for n in records if isinstance(n, Node)}
            elif kind == "budgets":
                self._budgets = {b.key: b for b in records if isinstance(b, Budget)}
                self._selecting = None
            else:
                self._pods.clear()
                self._on.clear()
                self._owned.clear()
                self._selected.clear()
                for pod in records:
                    if isinstance(pod, Pod):
                        self._put_pod(pod)
            self._record(Change("all", None))

    def _apply(self, kind: Kind, event: str, record: Record) -> None:
        with self._changed:
            if isinstance(record, Node):
                old_node = self._nodes.pop(record.name, None)
                if event != "DELETED":
                    self._nodes[record.name] = record
                if old_node != (record if event != "DELETED" else None):
                    self._record(Change(kind, record.name))
            elif isinstance(record, Budget):
                old_budget = self._budgets.pop(record.key, None)
                if event != "DELETED":
                    self._budgets[record.key] = record
                if old_budget is None or event == "DELETED" or old_budget.selector != record.selector:
                    self._selecting = None
                if old_budget != (record if event != "DELETED" else None):
                    self._record(Change(kind, record.key))
            elif isinstance(record, Pod):
                old_pod = self._pods.get(record.uid)
                if old_pod is not None:
                    self._drop_pod(old_pod)
                if event != "DELETED":
                    self._put_pod(record)
                if old_pod != (record if event != "DELETED" else None):
                    self._record(Change(kind, record.node))
                    if old_pod is not None and old_pod.node != record.node:
                        self._record(Change(kind, old_pod.node))

    def _put_pod(self, pod: Pod) -> None:
        self._pods[pod.uid] = pod
        self._on[pod.node][pod.uid] = pod
        if pod.owner is not None:
            self._owned[(pod.namespace, pod.owner)].add(pod.uid)

    def _drop_pod(self, pod: Pod) -> None:
        del self._pods[pod.uid]
        self._selected.pop(pod.uid, None)
        on = self._on[pod.node]
        del on[pod.uid]
        if not on:
            del self._on[pod.node]
        if pod.owner is not None:
            owned = self._owned[(pod.namespace, pod.owner)]
            owned.discard(pod.uid)
            if not owned:
                del self._owned[(pod.namespace, pod.owner)]

    def _record(self, change: Change) -> None:
        """Log a change (the lock is held) and wake the waits."""
        self._log.append(change)
        self._logged += 1
        if len(self._log) > LOG_SIZE:
            del self._log[: LOG_SIZE // 2]
        self._changed.notify_all()
