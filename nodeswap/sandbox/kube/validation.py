"""Validation the API server applies to writes, for the fields the sandbox checks (422 Invalid).

Transcribed from kubernetes/kubernetes ``pkg/apis/core/validation/validation.go`` (validateNodeTaints,
validateTaintEffect) and ``pkg/apis/policy/validation/validation.go``
(ValidatePodDisruptionBudgetSpec). Messages follow field.Error's "<path>: <type>: <value>: <detail>".
"""

from __future__ import annotations

import json

from nodeswap.sandbox.kube import errors
from nodeswap.sandbox.kube.resources import NODES, PDBS, Resource
from nodeswap.sandbox.kube.store import Object

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate(resource: Resource, obj: Object) -> None:
    """Raise 422 Invalid when ``obj`` breaks a rule the API server enforces on create and update."""
    if resource is NODES:
        problems = _node_taints(obj.get("spec") or {})
    elif resource is PDBS:
        problems = _budget(obj.get("spec") or {})
    else:
        return
    if problems:
        # errors.ToAggregate: one error as is, several in brackets.
        message = problems[0] if len(problems) == 1 else f"[{', '.join(problems)}]"
        raise errors.invalid(resource, obj["metadata"].get("name", ""), message)


def _node_taints(spec: Object) -> list[str]:
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for index, taint in enumerate(spec.get("taints") or []):
        path = f"spec.taints[{index}]"
        key, effect = str(taint.get("key", "")), str(taint.get("effect", ""))
        if not effect:
            problems.append(f"{path}.effect: Required value")
        elif effect not in TAINT_EFFECTS:
            supported = ", ".join(json.dumps(e) for e in TAINT_EFFECTS)
            problems.append(
                f"{path}.effect: Unsupported value: {json.dumps(effect)}: supported values: {supported}"
            )
        if (key, effect) in seen:
            value = json.dumps(taint.get("value", ""))
            shown = f"core.Taint{{Key:{json.dumps(key)}, Value:{value}, Effect:{json.dumps(effect)}}}"
            problems.append(f"{path}: Duplicate value: {shown}: taints must be unique by key and effect pair")
        seen.add((key, effect))
    return problems


def _budget(spec: Object) -> list[str]:
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        return ['spec: Invalid value: "object": minAvailable and maxUnavailable cannot be both set']
    return []
