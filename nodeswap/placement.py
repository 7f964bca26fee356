"""Where a pod may run, as kube-scheduler's filters decide it: resource quantities and requests,
tolerations against taints, nodeSelector and required node affinity.

Pure functions over API-shaped dicts (camelCase, as the API server serves them), for the planner's fit
check and the audit. The sandbox's scheduler has its own reading (nodeswap/sandbox/kube/podspec.py):
it is what judges this one, so the two share no code.
"""

from __future__ import annotations

import functools
import re
from typing import Any

Object = dict[str, Any]

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


# Cached: a cluster's objects repeat a few quantities (a workload's replicas request the same), and
# parsing a large list reads each of them thousands of times.
@functools.lru_cache(maxsize=4096)
def quantity(text: str | int | float) -> float:
    """A resource.Quantity ("250m", "1.5", "512Mi", "1e9") as a number of base units."""
    if isinstance(text, int | float):
        return float(text)
    match = _QUANTITY.match(text.strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"quantities must match the regular expression '{_QUANTITY.pattern}': {text!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def requests(pod_spec: Object, defaults: dict[str, float] | None = None) -> tuple[float, float]:
    """(CPU cores, memory bytes) a pod requests: the sum over its containers, or its largest init
    container if that is more. ``defaults`` stand in for a request a container leaves out."""
    missing = defaults or {"cpu": 0.0, "memory": 0.0}

    def total(containers: list[Object]) -> tuple[float, float]:
        asked = [(c.get("resources") or {}).get("requests") or {} for c in containers]
        cpu = sum(quantity(r.get("cpu", missing["cpu"])) for r in asked)
        memory = sum(quantity(r.get("memory", missing["memory"])) for r in asked)
        return cpu, memory

    cpu, memory = total(pod_spec.get("containers") or [])
    for init in pod_spec.get("initContainers") or []:
        init_cpu, init_memory = total([init])
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    return cpu, memory


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


def expression_matches(expression: Object, values: dict[str, str]) -> bool:
    """One NodeSelectorRequirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against labels."""
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


def required_node_affinity(pod_spec: Object) -> Object | None:
    affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required: Object | None = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    return required


def selects_node(
    node_selector: dict[str, str], required: Object | None, labels: dict[str, str], name: str
) -> bool:
    """nodeSelector and required node affinity (terms are ORed, expressions within a term ANDed)."""
    if any(labels.get(key) != value for key, value in node_selector.items()):
        return False
    if not required:
        return True
    fields = {"metadata.name": name}
    for term in required.get("nodeSelectorTerms") or []:
        expressions = term.get("matchExpressions") or []
        field_expressions = term.get("matchFields") or []
        if not expressions and not field_expressions:
            continue
        if all(expression_matches(e, labels) for e in expressions) and all(
            expression_matches(e, fields) for e in field_expressions
        ):
            return True
    return False
