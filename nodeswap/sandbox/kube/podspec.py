"""What kube-scheduler and the kubelet read from a pod spec against a node: resource quantities, a
pod's requests, tolerations against taints, nodeSelector and required node affinity.

The sandbox's own reading, written from the Kubernetes sources named beside each rule: nodeswap's fit
check (nodeswap/placement.py) is what this world judges, so the two must not share code.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from nodeswap.sandbox.kube.selectors import node_requirements_matcher

Object = dict[str, Any]

# apimachinery resource.Quantity: <signedNumber><suffix>, the suffix binary SI, decimal SI or a
# decimal exponent (pkg/api/resource/quantity.go, parseQuantityString).
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?|[eE][+-]?[0-9]+)")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


@functools.lru_cache(maxsize=4096)  # a cluster repeats a few quantities thousands of times
def quantity(value: str | int | float) -> float:
    """A quantity ("250m", "1.5Gi", "1e3") as a number of base units; ValueError when malformed."""
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise ValueError(f"quantities must match the regular expression '{_QUANTITY.pattern}'")
    number, suffix = float(match.group(1)), match.group(2)
    if suffix in _BINARY:
        return number * 2.0 ** _BINARY[suffix]
    exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:])
    return number * 10.0**exponent


def _container_requests(container: Object, missing: dict[str, float] | None) -> tuple[float, float]:
    asked = (container.get("resources") or {}).get("requests") or {}
    defaults = missing or {}
    cpu, memory = asked.get("cpu", defaults.get("cpu", 0)), asked.get("memory", defaults.get("memory", 0))
    return quantity(cpu), quantity(memory)


def pod_requests(pod_spec: Object, missing: dict[str, float] | None = None) -> tuple[float, float]:
    """(CPU cores, memory bytes) the pod requests, per component-helpers' resource.PodRequests: its
    containers and sidecars (init containers with restartPolicy Always) together, or the largest init
    container with the sidecars started before it if that is more, plus the pod overhead. ``missing``
    stands in for a request a container leaves out (scoring's non-zero requests)."""
    cpu = memory = 0.0
    for container in pod_spec.get("containers") or []:
        c, m = _container_requests(container, missing)
        cpu, memory = cpu + c, memory + m
    sidecar_cpu = sidecar_memory = init_cpu = init_memory = 0.0
    for init in pod_spec.get("initContainers") or []:
        c, m = _container_requests(init, missing)
        if init.get("restartPolicy") == "Always":
            cpu, memory = cpu + c, memory + m
            sidecar_cpu, sidecar_memory = sidecar_cpu + c, sidecar_memory + m
            c, m = sidecar_cpu, sidecar_memory
        else:
            c, m = c + sidecar_cpu, m + sidecar_memory
        init_cpu, init_memory = max(init_cpu, c), max(init_memory, m)
    overhead = pod_spec.get("overhead") or {}
    return (
        max(cpu, init_cpu) + quantity(overhead.get("cpu", 0)),
        max(memory, init_memory) + quantity(overhead.get("memory", 0)),
    )


def tolerates(toleration: Object, taint: Object) -> bool:
    """core/v1 Toleration.ToleratesTaint: effect and key, when set, must be the taint's; the operator
    Exists then matches any value, Equal (or none) the taint's value."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: list[Object], taint: Object) -> bool:
    return any(tolerates(toleration, taint) for toleration in tolerations)


def required_node_affinity(pod_spec: Object) -> Object | None:
    affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required: Object | None = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    return required


def selects_node(node_selector: dict[str, str], required: Object | None, node: Object) -> bool:
    """NodeAffinity's filter (component-helpers nodeaffinity.GetRequiredNodeAffinity): every
    nodeSelector label, and one of the required terms, a term matching when all its matchExpressions
    match the node's labels and all its matchFields its fields; a term with neither matches nothing."""
    meta = node["metadata"]
    labels = meta.get("labels") or {}
    if any(labels.get(key) != value for key, value in node_selector.items()):
        return False
    if required is None:
        return True
    fields = {"metadata.name": meta["name"]}
    for term in required.get("nodeSelectorTerms") or []:
        expressions, field_expressions = term.get("matchExpressions"), term.get("matchFields")
        if not expressions and not field_expressions:
            continue
        if node_requirements_matcher(expressions or [])(labels) and node_requirements_matcher(
            field_expressions or []
        )(fields):
            return True
    return False
