"""Discovery documents: what /version, /api, /apis and their group/version paths answer.

The sandbox answers legacy (unaggregated) discovery in plain ``application/json``; kubectl and
client-go fall back to it when the aggregated format they ask for first is not returned.
"""

from __future__ import annotations

from typing import Any

from nodeswap.sandbox.kube import openapi
from nodeswap.sandbox.kube.resources import ALL_VERBS, Resource, groups

KUBERNETES_VERSION = "v1.32.0"

# The kinds of subresources, as the API server lists them in APIResourceList.
_SUBRESOURCE = {
    "status": ("", "", ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", ("get", "patch", "update")),
    "eviction": ("policy", "v1", ("create",)),
}


def version() -> dict[str, str]:
    return {
        "major": "1",
        "minor": KUBERNETES_VERSION.split(".")[1],
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "nodeswap-sandbox",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _resource_list(group_version: str, resources: list[Resource]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for resource in resources:
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(ALL_VERBS),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        entries.append(entry)
        for sub in resource.subresources:
            group, sub_version, verbs = _SUBRESOURCE[sub]
            sub_entry: dict[str, Any] = {
                "name": f"{resource.plural}/{sub}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": {"status": resource.kind, "scale": "Scale", "eviction": "Eviction"}[sub],
                "verbs": list(verbs),
            }
            if group:
                sub_entry["group"], sub_entry["version"] = group, sub_version
            entries.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": listed,
        "preferredVersion": listed[0],
    }


def document(path: str) -> dict[str, Any] | None:
    """The discovery document at ``path``, or None if there is none."""
    path = "/" + path.strip("/")
    by_group = groups()
    named = {gv.split("/")[0]: gv for gv in by_group if "/" in gv}
    if path == "/version":
        return version()
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/api/v1":
        return _resource_list("v1", by_group["v1"])
    if path == "/apis":
        listed = [_group(name, [gv.split("/")[1]]) for name, gv in named.items()]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": listed}
    parts = path.strip("/").split("/")
    if parts[0] == "apis" and len(parts) in (2, 3) and parts[1] in named:
        group_version = named[parts[1]]
        if len(parts) == 2:
            return _group(parts[1], [group_version.split("/")[1]])
        if parts[2] == group_version.split("/")[1]:
            return _resource_list(group_version, by_group[group_version])
    if path in ("/healthz", "/readyz", "/livez"):
        return {"status": "ok"}
    return openapi.lookup(path)
