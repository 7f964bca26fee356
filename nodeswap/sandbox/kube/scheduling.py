"""Scheduling predicates: which nodes a pod may run on, as kube-scheduler's filters decide.

Tolerations against NoSchedule/NoExecute taints (and the unschedulable taint a cordon implies),
nodeSelector, required node affinity (matchExpressions and matchFields), and CPU/memory/pod-count
requests against allocatable. Pure functions over API objects.
"""

from __future__ import annotations

import re
from typing import Any

Object = dict[str, Any]
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


def quantity(text: str | int | float) -> float:
    """A resource.Quantity ("250m", "1.5", "512Mi", "1e9") as a number of base units."""
    if isinstance(text, int | float):
        return float(text)
    match = _QUANTITY.match(text.strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"quantities must match the regular expression '{_QUANTITY.pattern}': {text!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def tolerates(tolerations: list[Object], taint: Object) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration["key"] == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get(
            "value", ""
        ):
            return True
    return False


def taints_of(node: Object) -> list[Object]:
    taints: list[Object] = list(node.get("spec", {}).get("taints") or [])
    if node.get("spec", {}).get("unschedulable"):
        taints.append(UNSCHEDULABLE_TAINT)
    return taints


def untolerated(pod_spec: Object, node: Object, effects: tuple[str, ...]) -> list[Object]:
    tolerations = pod_spec.get("tolerations") or []
    return [t for t in taints_of(node) if t.get("effect") in effects and not tolerates(tolerations, t)]


def _expression_matches(expression: Object, values: dict[str, str]) -> bool:
    key, operator, wanted = (
        str(expression.get("key")),
        expression.get("operator"),
        expression.get("values") or [],
    )
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and wanted:
        try:
            actual, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return actual > bound if operator == "Gt" else actual < bound
    return False


def matches_node(pod_spec: Object, node: Object) -> bool:
    """nodeSelector and required node affinity (terms are ORed, expressions within a term ANDed)."""
    labels = node["metadata"].get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (
        (pod_spec.get("affinity") or {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if not required:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in required.get("nodeSelectorTerms") or []:
        expressions = term.get("matchExpressions") or []
        field_expressions = term.get("matchFields") or []
        if not expressions and not field_expressions:
            continue
        if all(_expression_matches(e, labels) for e in expressions) and all(
            _expression_matches(e, fields) for e in field_expressions
        ):
            return True
    return False


def requests(pod_spec: Object) -> tuple[float, float]:
    """(CPU cores, memory bytes) the pod requests: the sum over containers, or the largest init container."""

    def total(containers: list[Object]) -> tuple[float, float]:
        cpu = sum(quantity((c.get("resources") or {}).get("requests", {}).get("cpu", 0)) for c in containers)
        memory = sum(
            quantity((c.get("resources") or {}).get("requests", {}).get("memory", 0)) for c in containers
        )
        return cpu, memory

    cpu, memory = total(pod_spec.get("containers") or [])
    for init in pod_spec.get("initContainers") or []:
        init_cpu, init_memory = total([init])
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    return cpu, memory


def allocatable(node: Object) -> tuple[float, float, int]:
    values = node.get("status", {}).get("allocatable", {})
    return quantity(values.get("cpu", 0)), quantity(values.get("memory", 0)), int(values.get("pods", 110))
