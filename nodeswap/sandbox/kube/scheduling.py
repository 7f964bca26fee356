"""Scheduling as kube-scheduler's default plugins decide it: which nodes a pod may run on, and which
of them it goes to.

Filters: tolerations against NoSchedule/NoExecute taints (and the unschedulable taint a cordon
implies), nodeSelector, required node affinity (matchExpressions and matchFields), CPU/memory/pod-count
requests against allocatable, and required inter-pod affinity and anti-affinity (any topologyKey, the
anti-affinity of pods already placed included). Scores: NodeResourcesFit's LeastAllocated over the
requests with NonZeroRequested defaults (weight 1) and PodTopologySpread's system default constraints
(weight 2) over the pods of the same controller. Not simulated: a pod's own topologySpreadConstraints,
preferred (node or pod) affinity, PreferNoSchedule taints, balanced allocation and image locality;
ties go to the first node by name where kube-scheduler picks at random.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from nodeswap.sandbox.kube.podspec import (
    pod_requests,
    quantity,
    required_node_affinity,
    selects_node,
    tolerated,
)
from nodeswap.sandbox.kube.selectors import label_selector_matcher

Object = dict[str, Any]
HOSTNAME, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"
# What a container without requests counts for when nodes are scored (schedutil.DefaultMilliCPURequest,
# DefaultMemoryRequest): 100m CPU and 200 MiB, so that pods without requests still spread.
NON_ZERO_REQUESTS = {"cpu": 0.1, "memory": 200 * 2.0**20}
# PodTopologySpread's system default constraints, all ScheduleAnyway: (topology key, maxSkew).
DEFAULT_SPREAD = ((HOSTNAME, 3), (ZONE, 5))
MAX_NODE_SCORE = 100
SPREAD_WEIGHT = 2  # the plugin's weight in the default profile; NodeResourcesFit's is 1
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def no_execute_grace(tolerations: list[Object], taints: list[Object]) -> float | None:
    """How long a pod may stay on a node with these NoExecute taints: 0 when one is not tolerated,
    else the smallest tolerationSeconds of the tolerations used, None (forever) when none sets it
    (taint eviction's GetMatchingTolerations and getMinTolerationTime)."""
    seconds: list[float] = []
    for taint in taints:
        used = next((t for t in tolerations if tolerated([t], taint)), None)
        if used is None:
            return 0.0
        if used.get("tolerationSeconds") is not None:
            seconds.append(max(float(used["tolerationSeconds"]), 0.0))
    return min(seconds, default=None)


def taints_of(node: Object) -> list[Object]:
    taints: list[Object] = list(node.get("spec", {}).get("taints") or [])
    if node.get("spec", {}).get("unschedulable"):
        taints.append(UNSCHEDULABLE_TAINT)
    return taints


def untolerated(pod_spec: Object, node: Object, effects: tuple[str, ...]) -> list[Object]:
    tolerations = pod_spec.get("tolerations") or []
    return [t for t in taints_of(node) if t.get("effect") in effects and not tolerated(tolerations, t)]


def matches_node(pod_spec: Object, node: Object) -> bool:
    """nodeSelector and required node affinity."""
    return selects_node(pod_spec.get("nodeSelector") or {}, required_node_affinity(pod_spec), node)


def requests(pod_spec: Object, *, non_zero: bool = False) -> tuple[float, float]:
    """(CPU cores, memory bytes) the pod requests; ``non_zero`` counts a request a container leaves out
    as NON_ZERO_REQUESTS, as scoring does."""
    return pod_requests(pod_spec, NON_ZERO_REQUESTS if non_zero else None)


def allocatable(node: Object) -> tuple[float, float, int]:
    values = node.get("status", {}).get("allocatable", {})
    return quantity(values.get("cpu", 0)), quantity(values.get("memory", 0)), int(values.get("pods", 110))


def _units(cpu: float, memory: float) -> tuple[int, int]:
    """Cores and bytes as kube-scheduler counts them: whole millicores and bytes, rounded up
    (Quantity.MilliValue, Quantity.Value), so that sums never drift."""
    return math.ceil(round(cpu * 1000, 6)), math.ceil(round(memory, 6))


# ----- placing pods -------------------------------------------------------------------------------


def _least_allocated(state: _Node, request: tuple[int, int]) -> float:
    """NodeResourcesFit's LeastAllocated score: the average free share of CPU and memory once a pod
    requesting ``request`` (non-zero) is on the node."""
    (max_cpu, max_memory, _), (used_cpu, used_memory) = state.allocatable, state.non_zero
    cpu, memory = request
    free_cpu = (max_cpu - used_cpu - cpu) * MAX_NODE_SCORE / max_cpu if max_cpu > 0 else 0.0
    free_memory = (max_memory - used_memory - memory) * MAX_NODE_SCORE / max_memory if max_memory > 0 else 0.0
    return (max(free_cpu, 0.0) + max(free_memory, 0.0)) / 2


def _owner_uid(pod: Object) -> str | None:
    for owner in pod["metadata"].get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner["uid"])
    return None


def _terms(pod: Object, kind: str) -> list[Object]:
    affinity = (pod["spec"].get("affinity") or {}).get(kind) or {}
    terms: list[Object] = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    return terms


def _named_nodes(pod_spec: Object) -> set[str] | None:
    """The nodes a pod's required node affinity names by metadata.name, or None when it does not
    restrict it to named nodes (NodeAffinity's PreFilter: a DaemonSet pod is checked on its node only)."""
    required = required_node_affinity(pod_spec)
    if not required:
        return None
    names: set[str] = set()
    for term in required.get("nodeSelectorTerms") or []:
        if not term.get("matchExpressions") and not term.get("matchFields"):
            continue  # an empty term selects nothing (selects_node skips it)
        named = [
            set(e.get("values") or [])
            for e in term.get("matchFields") or []
            if e.get("key") == "metadata.name" and e.get("operator") == "In"
        ]
        if not named:
            return None
        names |= set.intersection(*named)
    return names


@dataclass
class _Node:
    name: str
    node: Object
    labels: dict[str, str]
    allocatable: tuple[int, int, int]  # milliCPU, memory bytes, pods
    taints: list[Object]  # those that keep new pods off: NoSchedule and NoExecute, a cordon's included
    domains: tuple[str | None, ...]  # its value of each DEFAULT_SPREAD topology key
    requested: list[int] = field(default_factory=lambda: [0, 0, 0])  # milliCPU, memory, pods
    non_zero: list[int] = field(default_factory=lambda: [0, 0])  # milliCPU, memory, for scoring
    pods: dict[str, Object] = field(default_factory=dict)  # by uid
    # Its LeastAllocated score per non-zero request shape, until what it holds changes (the pods of a
    # workload share one shape, and most nodes do not change between them).
    fit_scores: dict[tuple[int, int], float] = field(default_factory=dict)

    def fit_score(self, shape: tuple[int, int]) -> float:
        score = self.fit_scores.get(shape)
        if score is None:
            score = self.fit_scores[shape] = _least_allocated(self, shape)
        return score


@dataclass(frozen=True)
class _Placed:
    """What one bound pod adds to its node."""

    node: str
    requests: tuple[int, int]
    non_zero: tuple[int, int]
    spread_owner: str | None  # the controller it counts for in spreading (None: it does not count)
    anti: bool  # it has required anti-affinity terms
    labels: tuple[tuple[str, str], ...]


def _node_state(node: Object) -> _Node:
    cpu, memory, pods = allocatable(node)
    taints = [t for t in taints_of(node) if t.get("effect") in ("NoSchedule", "NoExecute")]
    labels = node["metadata"].get("labels") or {}
    domains = tuple(labels.get(key) for key, _ in DEFAULT_SPREAD)
    return _Node(node["metadata"]["name"], node, labels, (*_units(cpu, memory), pods), taints, domains)


@dataclass(frozen=True)
class _Admission:
    """A pod's tolerations and node selection (``key``: as text), and the verdicts on nodes kept for
    them: node name -> (the node object judged, whether its taints are tolerated and it is selected)."""

    key: str
    tolerations: list[Object]
    node_selector: dict[str, str]
    required: Object | None
    verdicts: dict[str, tuple[Object, bool]]

    def admits(self, state: _Node) -> bool:
        verdict = self.verdicts.get(state.name)
        if verdict is None or verdict[0] is not state.node:
            allowed = all(tolerated(self.tolerations, taint) for taint in state.taints) and (
                not (self.node_selector or self.required)
                or selects_node(self.node_selector, self.required, state.node)
            )
            verdict = self.verdicts[state.name] = (state.node, allowed)
        return verdict[1]


class Placement:
    """The scheduler's cache: the nodes and what the pods bound to them take, kept up to date as nodes,
    pods and namespaces change (kube-scheduler's internal cache), so that placing a pod costs one pass
    over the nodes, not over every pod.

    ``version`` moves with every change a placement depends on, and the cache logs which nodes each
    change concerned: a pod that fit no node at some version need only be tried on the nodes changed
    since (as long as neither it nor any placed pod has inter-pod affinity terms, whose domains span
    nodes), for the others are as they were when it did not fit them."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}
        self._names: list[str] = []  # sorted: ties go to the first node by name
        self._namespace_labels: dict[str, dict[str, str]] = {}
        # controller UID -> node -> its pods there, for spreading
        self._by_owner: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._anti: dict[str, tuple[Object, str]] = {}  # placed pods with required anti-affinity
        self._placed: dict[str, _Placed] = {}  # pod uid -> what it adds
        self.version = 0
        self._changes: list[tuple[int, str]] = []  # (version, node it concerned), oldest first
        self._everywhere = 0  # the version of the last change that may concern any node
        # Tolerations and node selection (as text) -> node -> (the node object judged, whether its
        # taints are tolerated and it is selected).
        self._admits: dict[str, dict[str, tuple[Object, bool]]] = {}
        # The same key -> the nodes it admits, by name, as of ``_nodes_version`` (which moves whenever a
        # node is added, changed or deleted), so that a pass over every node reads only those.
        self._admitted: dict[str, tuple[int, list[_Node]]] = {}
        self._nodes_version = 0
        # Pod uid -> its spec and what it requests, as is and for scoring: a status change keeps the
        # spec (the store shares what a write leaves alone), and parsing quantities is not cheap.
        self._requested: dict[str, tuple[Object, tuple[int, int], tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    # ----- keeping up with the cluster ----------------------------------------------------------

    def node_changed(self, name: str, node: Object | None, pods: list[Object]) -> None:
        """A node was added, changed (``pods`` are those bound to it) or deleted (``node`` None)."""
        state = self._nodes.get(name)
        if node is None:
            if state is not None:
                for uid in list(state.pods):
                    self._remove(uid)
                del self._nodes[name]
                self._names.remove(name)
                for key, admits in list(self._admits.items()):
                    admits.pop(name, None)
                    if not admits:
                        del self._admits[key]
                        self._admitted.pop(key, None)
            self.version += 1  # a node gone makes no pod fit where it did not
            self._nodes_version += 1
            return
        fresh = _node_state(node)
        self._nodes_version += 1
        if state is not None:
            # Labels are topology domains: the anti-affinity of the pods placed there reads them.
            self._touch(name, everywhere=fresh.labels != state.labels and bool(self._anti))
            self._nodes[name] = fresh
            fresh.requested, fresh.non_zero, fresh.pods = state.requested, state.non_zero, state.pods
            return
        self._nodes[name] = fresh
        bisect.insort(self._names, name)
        self._touch(name)
        for pod in pods:
            self.pod_changed(None, pod)

    def namespace_changed(self, name: str, namespace: Object | None) -> None:
        self._touch(None, everywhere=True)  # affinity terms select namespaces by their labels
        if namespace is None:
            self._namespace_labels.pop(name, None)
        else:
            self._namespace_labels[name] = namespace["metadata"].get("labels") or {}

    def pod_changed(self, old: Object | None, new: Object | None) -> None:
        """A pod was created, changed or deleted (``new`` None): what it takes from its node follows.
        Finished pods and pods on nodes the cache does not know take nothing."""
        uid = (new or old or {})["metadata"]["uid"]
        if new is None:
            self._requested.pop(uid, None)
        before = self._placed.get(uid)
        after = self._placement_of(new) if new is not None else None
        if before == after:
            return
        if before is not None:
            self._remove(uid)
        if after is not None and new is not None:
            self._add(uid, new, after)

    def changed_since(self, version: int) -> set[str] | None:
        """The nodes changes concerned after ``version``; None when one may have concerned any node."""
        if self._everywhere > version:
            return None
        start = bisect.bisect_right(self._changes, version, key=lambda change: change[0])
        return {name for _, name in self._changes[start:] if name in self._nodes}

    def forget_changes(self, until: int) -> None:
        """Drop the log of the changes up to ``until``: no pod will be tried since an older version."""
        del self._changes[: bisect.bisect_right(self._changes, until, key=lambda change: change[0])]

    def _touch(self, node: str | None, *, everywhere: bool = False) -> None:
        self.version += 1
        if node is not None:
            self._changes.append((self.version, node))
        if everywhere:
            self._everywhere = self.version

    def _requests(self, pod: Object) -> tuple[tuple[int, int], tuple[int, int]]:
        spec = pod["spec"]
        cached = self._requested.get(pod["metadata"]["uid"])
        if cached is None or cached[0] is not spec:
            cached = spec, _units(*requests(spec)), _units(*requests(spec, non_zero=True))
            self._requested[pod["metadata"]["uid"]] = cached
        return cached[1], cached[2]

    def _placement_of(self, pod: Object) -> _Placed | None:
        node = pod["spec"].get("nodeName")
        if node not in self._nodes or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return None
        # Spreading counts the pods that stay: PodTopologySpread skips terminating ones.
        owner = _owner_uid(pod) if "deletionTimestamp" not in pod["metadata"] else None
        return _Placed(
            node,
            *self._requests(pod),
            owner,
            bool(_terms(pod, "podAntiAffinity")),
            tuple(sorted((pod["metadata"].get("labels") or {}).items())),
        )

    def _add(self, uid: str, pod: Object, placed: _Placed) -> None:
        self._touch(placed.node, everywhere=placed.anti)
        state = self._nodes[placed.node]
        (cpu, memory), (nz_cpu, nz_memory) = placed.requests, placed.non_zero
        state.requested = [state.requested[0] + cpu, state.requested[1] + memory, state.requested[2] + 1]
        state.non_zero = [state.non_zero[0] + nz_cpu, state.non_zero[1] + nz_memory]
        state.fit_scores = {}
        state.pods[uid] = pod
        if placed.spread_owner is not None:
            self._by_owner[placed.spread_owner][placed.node] += 1
        if placed.anti:
            self._anti[uid] = (pod, placed.node)
        self._placed[uid] = placed

    def _remove(self, uid: str) -> None:
        placed = self._placed.pop(uid)
        self._touch(placed.node, everywhere=placed.anti)
        state = self._nodes[placed.node]
        (cpu, memory), (nz_cpu, nz_memory) = placed.requests, placed.non_zero
        state.requested = [state.requested[0] - cpu, state.requested[1] - memory, state.requested[2] - 1]
        state.non_zero = [state.non_zero[0] - nz_cpu, state.non_zero[1] - nz_memory]
        state.fit_scores = {}
        del state.pods[uid]
        if placed.spread_owner is not None:
            counts = self._by_owner[placed.spread_owner]
            counts[placed.node] -= 1
            if not counts[placed.node]:
                del counts[placed.node]
            if not counts:
                del self._by_owner[placed.spread_owner]
        self._anti.pop(uid, None)

    # ----- choosing -----------------------------------------------------------------------------

    def choose(self, pod: Object, failed_at: int | None = None) -> str | None:
        """The node kube-scheduler would bind ``pod`` to, or None when no node passes the filters.
        ``failed_at``: a version at which the pod, as it is, fit no node."""
        spec = pod["spec"]
        named = _named_nodes(spec)
        changed = None
        if failed_at is not None and not _terms(pod, "podAntiAffinity") and not _terms(pod, "podAffinity"):
            changed = self.changed_since(failed_at)
        names: set[str] | None = None  # None: every node
        if changed is not None:
            names = changed if named is None else changed & named
        elif named is not None:
            names = named.intersection(self._nodes)
        admission = self._admission(spec)
        if names is None:
            candidates = self._admitted_everywhere(admission)
        else:
            candidates = [self._nodes[name] for name in sorted(names)]
            candidates = [state for state in candidates if admission.admits(state)]
        (cpu, memory), _ = self._requests(pod)
        # NodeResourcesFit's filter: the requests against what is left, and a free pod slot.
        feasible = [
            state
            for state in candidates
            if state.requested[0] + cpu <= state.allocatable[0]
            and state.requested[1] + memory <= state.allocatable[1]
            and state.requested[2] < state.allocatable[2]
        ]
        if self._anti or _terms(pod, "podAntiAffinity") or _terms(pod, "podAffinity"):
            feasible = [state for state in feasible if self._affinity_allows(pod, state)]
        if len(feasible) <= 1:
            return feasible[0].name if feasible else None  # a DaemonSet's pod: its one node, or none
        scores = self._scores(pod, feasible)
        # The first of the best, by name.
        return feasible[scores.index(max(scores))].name

    # ----- filters --------------------------------------------------------------------------

    def _admission(self, spec: Object) -> _Admission:
        """The filters that read only the node object and the pod's tolerations and node selection:
        the taints it does not tolerate, nodeSelector and required node affinity. Their verdicts are
        kept per node for every pod alike (the pods of one template are), until the node changes."""
        tolerations = spec.get("tolerations") or []
        node_selector = spec.get("nodeSelector") or {}
        required = required_node_affinity(spec)
        key = repr((tolerations, node_selector, required))
        return _Admission(key, tolerations, node_selector, required, self._admits.setdefault(key, {}))

    def _admitted_everywhere(self, admission: _Admission) -> list[_Node]:
        """Every node ``admission`` admits, by name; kept until a node changes."""
        known = self._admitted.get(admission.key)
        if known is None or known[0] != self._nodes_version:
            nodes = [state for state in map(self._nodes.__getitem__, self._names) if admission.admits(state)]
            known = self._admitted[admission.key] = (self._nodes_version, nodes)
        return known[1]

    def _affinity_allows(self, pod: Object, state: _Node) -> bool:
        """InterPodAffinity's filter: the pod's required anti-affinity and affinity terms, and the
        required anti-affinity of the pods already placed, over the node's topology domain."""
        for term in _terms(pod, "podAntiAffinity"):
            if any(self._selects(term, pod, other) for other in self._in_domain(state, term["topologyKey"])):
                return False
        for other, where in self._anti.values():
            for term in _terms(other, "podAntiAffinity"):
                key = term["topologyKey"]
                value = self._nodes[where].labels.get(key)
                if value is not None and state.labels.get(key) == value and self._selects(term, other, pod):
                    return False
        for term in _terms(pod, "podAffinity"):
            key = term["topologyKey"]
            if any(self._selects(term, pod, other) for other in self._in_domain(state, key)):
                continue
            # No match in the node's domain: allowed only for the first pod of a group whose term
            # selects the pod itself, while no pod anywhere matches (satisfyPodAffinity).
            anywhere = any(self._selects(term, pod, p) for n in self._nodes.values() for p in n.pods.values())
            if anywhere or key not in state.labels or not self._selects(term, pod, pod):
                return False
        return True

    def _in_domain(self, state: _Node, key: str) -> list[Object]:
        """The pods on the nodes sharing the node's value of ``key`` (none if it lacks the label)."""
        value = state.labels.get(key)
        if value is None:
            return []
        return [p for n in self._nodes.values() if n.labels.get(key) == value for p in n.pods.values()]

    def _selects(self, term: Object, owner: Object, other: Object) -> bool:
        """Whether an affinity term of ``owner`` selects ``other``: its namespaces (the owner's own by
        default; namespaceSelector {} is every namespace), then its labelSelector (null selects none)."""
        namespace = other["metadata"].get("namespace", "")
        namespaces = term.get("namespaces") or []
        selector = term.get("namespaceSelector")
        if selector is not None:
            labels = self._namespace_labels.get(namespace, {})
            in_scope = namespace in namespaces or label_selector_matcher(selector, none_matches=True)(labels)
        else:
            in_scope = namespace in (namespaces or [owner["metadata"].get("namespace", "")])
        matches = label_selector_matcher(term.get("labelSelector"), none_matches=True)
        return in_scope and matches(other["metadata"].get("labels") or {})

    # ----- scores ---------------------------------------------------------------------------

    def _scores(self, pod: Object, nodes: list[_Node]) -> list[float]:
        """Each node's score: NodeResourcesFit's LeastAllocated (the average free share of CPU and
        memory once the pod is there) plus PodTopologySpread's with the system default constraints,
        its selector being the pod's controller (fewer pods of the same controller in a node's host
        and zone score higher), at its weight."""
        _, shape = self._requests(pod)
        scores = [
            score if (score := state.fit_scores.get(shape)) is not None else state.fit_score(shape)
            for state in nodes
        ]
        spread = self._spread_scores(pod, nodes)
        if spread is None:
            return scores
        return [fit + SPREAD_WEIGHT * score for fit, score in zip(scores, spread, strict=True)]

    def _spread_scores(self, pod: Object, nodes: list[_Node]) -> list[float] | None:
        """PodTopologySpread's normalized scores; None for a pod without a controller (0 everywhere)."""
        owner = _owner_uid(pod)
        if owner is None:
            return None
        on_node = self._by_owner.get(owner, {})
        # Per constraint: topologyNormalizingWeight, log(domains + 2), the domains being those of the
        # feasible nodes; and the controller's pods in each node's domain.
        weights, columns = [], []
        for index in range(len(DEFAULT_SPREAD)):
            domains = [state.domains[index] for state in nodes]
            weights.append(math.log(len(set(domains)) + 2))
            in_domain: dict[str | None, int] = defaultdict(int)
            for node, count in on_node.items():
                in_domain[self._nodes[node].domains[index]] += count
            columns.append([in_domain.get(domain, 0) for domain in domains])
        # A node's raw score depends only on its counts: computed once per distinct counts.
        counts = list(zip(*columns, strict=True))
        raw: dict[tuple[int, ...], int] = {}
        for key in set(counts):
            score = 0.0
            for count, weight, (_, max_skew) in zip(key, weights, DEFAULT_SPREAD, strict=True):
                score = score + count * weight + (max_skew - 1)
            raw[key] = round(score)
        # NormalizeScore: the node with the fewest matching pods scores MAX_NODE_SCORE.
        high, low = max(raw.values()), min(raw.values())
        if high == 0:
            return [float(MAX_NODE_SCORE)] * len(nodes)
        normalized = {key: MAX_NODE_SCORE * (high + low - score) / high for key, score in raw.items()}
        return [normalized[key] for key in counts]
