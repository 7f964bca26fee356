"""The Kubernetes resources the sandbox serves, as discovery describes them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

# deletecollection is not served, so discovery does not offer it.
ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str  # "" is the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @cached_property  # the store looks resources up by it on every read and write
    def key(self) -> str:
        """Unique within the server: the group and the plural name."""
        return f"{self.group}/{self.plural}"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def qualified(self) -> str:
        """How API error messages name the resource: "pods", "deployments.apps"."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_WORKLOAD = ("status", "scale")

RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",)),
    Resource("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    Resource("", "v1", "pods", "Pod", True, ("po",), ("status", "eviction"), ("all",)),
    Resource("", "v1", "events", "Event", True, ("ev",)),
    Resource("", "v1", "services", "Service", True, ("svc",), ("status",), ("all",)),
    Resource("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",), _WORKLOAD, ("all",)),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), _WORKLOAD, ("all",)),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), _WORKLOAD, ("all",)),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), ("all",)),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
)

BY_KEY = {resource.key: resource for resource in RESOURCES}
BY_KIND = {(resource.api_version, resource.kind): resource for resource in RESOURCES}

NAMESPACES = BY_KEY["/namespaces"]
NODES = BY_KEY["/nodes"]
PODS = BY_KEY["/pods"]
EVENTS = BY_KEY["/events"]
SERVICES = BY_KEY["/services"]
ENDPOINTS = BY_KEY["/endpoints"]
DEPLOYMENTS = BY_KEY["apps/deployments"]
REPLICASETS = BY_KEY["apps/replicasets"]
STATEFULSETS = BY_KEY["apps/statefulsets"]
DAEMONSETS = BY_KEY["apps/daemonsets"]
PDBS = BY_KEY["policy/poddisruptionbudgets"]
LEASES = BY_KEY["coordination.k8s.io/leases"]


def groups() -> dict[str, list[Resource]]:
    """Resources by API group/version, in the order discovery lists them."""
    by_group: dict[str, list[Resource]] = {}
    for resource in RESOURCES:
        by_group.setdefault(resource.api_version, []).append(resource)
    return by_group
