"""A minimal OpenAPI v3 description of the served resources.

kubectl downloads /openapi/v3 to learn whether the server validates fields itself: it looks, for the
object's group/version/kind, for the ``fieldValidation`` query parameter on the create and patch
operations. Finding it, kubectl sends ``fieldValidation=Strict`` and skips client-side validation
(k8s.io/kubectl pkg/util/openapi/query_param_verifier). The sandbox describes exactly that much;
without schemas, kubectl computes apply patches from its compiled-in types.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nodeswap.sandbox.kube.resources import Resource, groups

_FIELD_VALIDATION = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}


def _path_prefix(group_version: str) -> str:
    return "api/v1" if group_version == "v1" else f"apis/{group_version}"


def _operations(resource: Resource, actions: dict[str, str]) -> dict[str, Any]:
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    return {
        method: {
            "operationId": f"{action}{resource.kind}",
            "parameters": [_FIELD_VALIDATION] if method in ("post", "put", "patch") else [],
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        }
        for method, action in actions.items()
    }


def document(group_version: str) -> dict[str, Any] | None:
    resources = groups().get(group_version)
    if resources is None:
        return None
    paths: dict[str, Any] = {}
    for resource in resources:
        base = "/" + _path_prefix(group_version)
        scope = f"{base}/namespaces/{{namespace}}" if resource.namespaced else base
        paths[f"{scope}/{resource.plural}"] = _operations(resource, {"get": "list", "post": "post"})
        paths[f"{scope}/{resource.plural}/{{name}}"] = _operations(
            resource, {"get": "get", "put": "put", "patch": "patch", "delete": "delete"}
        )
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths}


def index() -> dict[str, Any]:
    paths = {}
    for group_version in groups():
        digest = hashlib.sha256(json.dumps(document(group_version), sort_keys=True).encode()).hexdigest()[:16]
        prefix = _path_prefix(group_version)
        paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest.upper()}"}
    return {"paths": paths}


def lookup(path: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document at ``path`` (the index, or one group/version), or None."""
    path = path.strip("/")
    if path == "openapi/v3":
        return index()
    prefix = path.removeprefix("openapi/v3/")
    if prefix == path:
        return None
    group_version = "v1" if prefix == "api/v1" else prefix.removeprefix("apis/")
    return document(group_version)
