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

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from nodeswap import placement
from nodeswap.placement import quantity, required_node_affinity, selects_node, tolerates
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
        used = next((t for t in tolerations if tolerates([t], taint)), None)
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
    return [t for t in taints_of(node) if t.get("effect") in effects and not tolerates(tolerations, t)]


def matches_node(pod_spec: Object, node: Object) -> bool:
    """nodeSelector and required node affinity."""
    meta = node["metadata"]
    return selects_node(
        pod_spec.get("nodeSelector") or {},
        required_node_affinity(pod_spec),
        meta.get("labels") or {},
        meta["name"],
    )


def requests(pod_spec: Object, *, non_zero: bool = False) -> tuple[float, float]:
    """(CPU cores, memory bytes) the pod requests; ``non_zero`` counts a request a container leaves out
    as NON_ZERO_REQUESTS, as scoring does."""
    return placement.requests(pod_spec, NON_ZERO_REQUESTS if non_zero else None)


def allocatable(node: Object) -> tuple[float, float, int]:
    values = node.get("status", {}).get("allocatable", {})
    return quantity(values.get("cpu", 0)), quantity(values.get("memory", 0)), int(values.get("pods", 110))


# ----- placing pods -------------------------------------------------------------------------------


def _owner_uid(pod: Object) -> str | None:
    for owner in pod["metadata"].get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner["uid"])
    return None


def _terms(pod: Object, kind: str) -> list[Object]:
    affinity = (pod["spec"].get("affinity") or {}).get(kind) or {}
    terms: list[Object] = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    return terms


@dataclass
class _Node:
    node: Object
    labels: dict[str, str]
    requested: list[float] = field(default_factory=lambda: [0.0, 0.0, 0])  # CPU, memory, pods
    non_zero: list[float] = field(default_factory=lambda: [0.0, 0.0])  # CPU, memory, for scoring
    pods: list[Object] = field(default_factory=list)


class Placement:
    """The nodes as one scheduling pass sees them, kept up to date as the pass binds pods."""

    def __init__(self, nodes: list[Object], pods: list[Object], namespaces: list[Object]) -> None:
        self._nodes: dict[str, _Node] = {
            n["metadata"]["name"]: _Node(n, n["metadata"].get("labels") or {})
            for n in sorted(nodes, key=lambda n: str(n["metadata"]["name"]))
        }
        self._namespace_labels = {
            ns["metadata"]["name"]: ns["metadata"].get("labels") or {} for ns in namespaces
        }
        # controller UID -> node -> its pods there, for spreading
        self._by_owner: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._anti: list[tuple[Object, str]] = []  # placed pods with required anti-affinity, and their node
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node in self._nodes and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                self.add(pod, node)

    def __len__(self) -> int:
        return len(self._nodes)

    def add(self, pod: Object, node: str) -> None:
        state = self._nodes[node]
        cpu, memory = requests(pod["spec"])
        state.requested = [state.requested[0] + cpu, state.requested[1] + memory, state.requested[2] + 1]
        cpu, memory = requests(pod["spec"], non_zero=True)
        state.non_zero = [state.non_zero[0] + cpu, state.non_zero[1] + memory]
        state.pods.append(pod)
        owner = _owner_uid(pod)
        # Spreading counts the pods that stay: PodTopologySpread skips terminating ones.
        if owner is not None and "deletionTimestamp" not in pod["metadata"]:
            self._by_owner[owner][node] += 1
        if _terms(pod, "podAntiAffinity"):
            self._anti.append((pod, node))

    def choose(self, pod: Object) -> str | None:
        """The node kube-scheduler would bind ``pod`` to, or None when no node passes the filters."""
        feasible = [name for name in self._nodes if self._fits(pod, self._nodes[name])]
        if not feasible:
            return None
        spread = self._spread_scores(pod, feasible)
        return max(feasible, key=lambda name: self._fit_score(pod, name) + SPREAD_WEIGHT * spread[name])

    # ----- filters --------------------------------------------------------------------------

    def _fits(self, pod: Object, state: _Node) -> bool:
        spec = pod["spec"]
        if untolerated(spec, state.node, ("NoSchedule", "NoExecute")) or not matches_node(spec, state.node):
            return False
        cpu, memory = requests(spec)
        max_cpu, max_memory, max_pods = allocatable(state.node)
        used = state.requested
        if not (used[0] + cpu <= max_cpu + 1e-9 and used[1] + memory <= max_memory and used[2] < max_pods):
            return False
        return self._affinity_allows(pod, state)

    def _affinity_allows(self, pod: Object, state: _Node) -> bool:
        """InterPodAffinity's filter: the pod's required anti-affinity and affinity terms, and the
        required anti-affinity of the pods already placed, over the node's topology domain."""
        for term in _terms(pod, "podAntiAffinity"):
            if any(self._selects(term, pod, other) for other in self._in_domain(state, term["topologyKey"])):
                return False
        for other, where in self._anti:
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
            anywhere = any(self._selects(term, pod, p) for n in self._nodes.values() for p in n.pods)
            if anywhere or key not in state.labels or not self._selects(term, pod, pod):
                return False
        return True

    def _in_domain(self, state: _Node, key: str) -> list[Object]:
        """The pods on the nodes sharing the node's value of ``key`` (none if it lacks the label)."""
        value = state.labels.get(key)
        if value is None:
            return []
        return [p for n in self._nodes.values() if n.labels.get(key) == value for p in n.pods]

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

    def _fit_score(self, pod: Object, name: str) -> float:
        """LeastAllocated: the average free share of CPU and memory once the pod is there."""
        state = self._nodes[name]
        cpu, memory = requests(pod["spec"], non_zero=True)
        max_cpu, max_memory, _ = allocatable(state.node)
        free = [
            (capacity - used - asked) * MAX_NODE_SCORE / capacity if capacity > 0 else 0.0
            for capacity, used, asked in (
                (max_cpu, state.non_zero[0], cpu),
                (max_memory, state.non_zero[1], memory),
            )
        ]
        return sum(max(share, 0.0) for share in free) / 2

    def _spread_scores(self, pod: Object, feasible: list[str]) -> dict[str, float]:
        """PodTopologySpread with the system default constraints, its selector being the pod's
        controller: fewer pods of the same controller in a node's host and zone score higher."""
        owner = _owner_uid(pod)
        if owner is None:
            return dict.fromkeys(feasible, 0.0)
        on_node = self._by_owner[owner]
        raw = dict.fromkeys(feasible, 0.0)
        for key, max_skew in DEFAULT_SPREAD:
            # topologyNormalizingWeight: log(domains + 2), the domains being those of the feasible nodes.
            weight = math.log(len({self._nodes[n].labels.get(key) for n in feasible}) + 2)
            in_domain: dict[str | None, int] = defaultdict(int)
            for node, count in on_node.items():
                in_domain[self._nodes[node].labels.get(key)] += count
            for name in feasible:
                raw[name] += in_domain[self._nodes[name].labels.get(key)] * weight + (max_skew - 1)
        # NormalizeScore: the node with the fewest matching pods scores MAX_NODE_SCORE.
        rounded = {name: round(score) for name, score in raw.items()}
        high, low = max(rounded.values()), min(rounded.values())
        if high == 0:
            return dict.fromkeys(feasible, float(MAX_NODE_SCORE))
        return {name: MAX_NODE_SCORE * (high + low - score) / high for name, score in rounded.items()}
