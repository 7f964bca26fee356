"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for, per kind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from nodeswap.sandbox.clock import Clock
from nodeswap.sandbox.kube.resources import Resource

TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"
Object = dict[str, Any]
Cell = Callable[[Object, datetime], Any]
# (column name, type, priority: 0 always shown, 1 only with -o wide, cell)
Column = tuple[str, str, int, Cell]


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def age(obj: Object, now: datetime) -> str:
    """kubectl's short human duration (k8s.io/apimachinery duration.HumanDuration)."""
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return "<unknown>"
    seconds = int((now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def _name(obj: Object, _: datetime) -> str:
    return str(obj["metadata"]["name"])


def _pod_status(pod: Object, _: datetime) -> str:
    if "deletionTimestamp" in pod["metadata"]:
        return "Terminating"
    status = pod.get("status", {})
    for container in status.get("containerStatuses") or []:
        waiting = container.get("state", {}).get("waiting")
        if waiting:
            return str(waiting.get("reason", "Waiting"))
    return str(status.get("phase", "Pending"))


def _pod_ready(pod: Object, _: datetime) -> str:
    containers = pod.get("spec", {}).get("containers", [])
    ready = sum(1 for c in pod.get("status", {}).get("containerStatuses") or [] if c.get("ready"))
    return f"{ready}/{len(containers)}"


def _node_status(node: Object, _: datetime) -> str:
    ready = next((c for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    return f"{status},SchedulingDisabled" if node.get("spec", {}).get("unschedulable") else status


def _node_roles(node: Object, _: datetime) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = [key.removeprefix(prefix) for key in node["metadata"].get("labels", {}) if key.startswith(prefix)]
    return ",".join(sorted(roles)) or "<none>"


def _address(kind: str) -> Cell:
    def cell(node: Object, _: datetime) -> str:
        for address in node.get("status", {}).get("addresses", []):
            if address.get("type") == kind:
                return str(address.get("address"))
        return "<none>"

    return cell


def _field(*path: str, default: Any = 0) -> Cell:
    def cell(obj: Object, _: datetime) -> Any:
        value: Any = obj
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        return default if value in ({}, None) else value

    return cell


def _ratio(ready: Cell, desired: Cell) -> Cell:
    return lambda obj, now: f"{ready(obj, now)}/{desired(obj, now)}"


_NAME: Column = ("Name", "string", 0, _name)
_AGE: Column = ("Age", "string", 0, age)
_READY_OF = _ratio(_field("status", "readyReplicas"), _field("spec", "replicas"))

COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        _NAME,
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "string", 0, lambda pod, _: "0"),
        _AGE,
        ("IP", "string", 1, _field("status", "podIP", default="<none>")),
        ("Node", "string", 1, _field("spec", "nodeName", default="<none>")),
    ],
    "Node": [
        _NAME,
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, _node_roles),
        _AGE,
        ("Version", "string", 0, _field("status", "nodeInfo", "kubeletVersion", default="")),
        ("Internal-IP", "string", 1, _address("InternalIP")),
        ("External-IP", "string", 1, _address("ExternalIP")),
        ("OS-Image", "string", 1, _field("status", "nodeInfo", "osImage", default="<unknown>")),
        ("Kernel-Version", "string", 1, _field("status", "nodeInfo", "kernelVersion", default="<unknown>")),
        (
            "Container-Runtime",
            "string",
            1,
            _field("status", "nodeInfo", "containerRuntimeVersion", default="<unknown>"),
        ),
    ],
    "Deployment": [
        _NAME,
        ("Ready", "string", 0, _READY_OF),
        ("Up-to-date", "integer", 0, _field("status", "updatedReplicas")),
        ("Available", "integer", 0, _field("status", "availableReplicas")),
        _AGE,
    ],
    "ReplicaSet": [
        _NAME,
        ("Desired", "integer", 0, _field("spec", "replicas")),
        ("Current", "integer", 0, _field("status", "replicas")),
        ("Ready", "integer", 0, _field("status", "readyReplicas")),
        _AGE,
    ],
    "StatefulSet": [_NAME, ("Ready", "string", 0, _READY_OF), _AGE],
    "DaemonSet": [
        _NAME,
        ("Desired", "integer", 0, _field("status", "desiredNumberScheduled")),
        ("Current", "integer", 0, _field("status", "currentNumberScheduled")),
        ("Ready", "integer", 0, _field("status", "numberReady")),
        ("Available", "integer", 0, _field("status", "numberAvailable")),
        _AGE,
    ],
    "PodDisruptionBudget": [
        _NAME,
        ("Min Available", "string", 0, _field("spec", "minAvailable", default="N/A")),
        ("Max Unavailable", "string", 0, _field("spec", "maxUnavailable", default="N/A")),
        ("Allowed Disruptions", "integer", 0, _field("status", "disruptionsAllowed")),
        _AGE,
    ],
}


def _object_for(obj: Object, include: str) -> Object | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(resource: Resource, obj: Object, clock: Clock, include: str) -> Object:
    """A Table of one object or of a list's items."""
    now = clock.wall()
    columns = COLUMNS.get(resource.kind, [_NAME, _AGE])
    items = obj.get("items", [obj])
    rows = []
    for item in items:
        row: Object = {"cells": [cell(item, now) for _, _, _, cell in columns]}
        shown = _object_for(item, include)
        if shown is not None:
            row["object"] = shown
        rows.append(row)
    metadata = {
        key: value for key, value in obj.get("metadata", {}).items() if key in ("resourceVersion", "continue")
    }
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": p,
            }
            for name, kind, p, _ in columns
        ],
        "rows": rows,
    }
