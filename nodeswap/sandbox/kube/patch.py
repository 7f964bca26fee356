"""PATCH bodies applied the way kube-apiserver applies them: JSON patch, JSON merge patch and strategic merge.

The strategic merge follows the apply half of apimachinery's strategicpatch package, as the API servers
that kubectl 1.27-1.33 talk to run it: its directives, its null handling and the order it gives merged
lists (items new to a list come before the live ones: a container added by a patch comes first). Which
lists merge, and by which key, comes from the Go struct tags of the built-in types, copied into MERGE_KEYS.

[RFC6902] https://www.rfc-editor.org/rfc/rfc6902
[RFC7386] https://www.rfc-editor.org/rfc/rfc7386
[SMPDOC]  https://git.k8s.io/community/contributors/devel/sig-api-machinery/strategic-merge-patch.md
[SMP]     k8s.io/apimachinery/pkg/util/strategicpatch/patch.go (mergeMap, mergeSlice, normalizeElementOrder)
[META]    k8s.io/apimachinery/pkg/apis/meta/v1/types.go  (struct tags patchStrategy, patchMergeKey)
[CORE]    k8s.io/api/core/v1/types.go
[APPS]    k8s.io/api/apps/v1/types.go
[BATCH]   k8s.io/api/batch/v1/types.go
[POLICY]  k8s.io/api/policy/v1/types.go
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from nodeswap.sandbox.kube.clone import clone


class PatchError(ValueError):
    """A patch that cannot be applied; the message is what the API server would say (a 422/400 answer)."""


# ----- the merge-key table -------------------------------------------------------------------------------
# A field's strategy, as its Go struct tags give it: for a list with patchStrategy "merge", the
# patchMergeKey its items merge by, or SCALARS for a list of scalars merged as a set; REPLACE for a map
# with patchStrategy "replace". Paths are dotted from the object's root; a list's items share the list's
# path. Fields absent from the table take Go's default: maps merge, lists are replaced whole.
# A "merge,retainKeys" strategy needs only its merge key here: retainKeys shapes the patches clients
# compute, and the server honours whatever $retainKeys a patch carries.
SCALARS = ""
REPLACE = "!replace"

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")  # PodSpec, merge by name [CORE]
# Container and EphemeralContainerCommon [CORE]; envFrom and resizePolicy have no patchStrategy.
_CONTAINER = {
    "ports": "containerPort",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
}
# PodSpec [CORE]; tolerations and readinessGates have no patchStrategy, so a patch replaces them.
_POD_SPEC = {
    **dict.fromkeys(_CONTAINER_LISTS, "name"),
    **{f"{containers}.{field}": key for containers in _CONTAINER_LISTS for field, key in _CONTAINER.items()},
    "volumes": "name",  # merge,retainKeys
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "schedulingGates": "name",
    "resourceClaims": "name",  # merge,retainKeys
}
# ObjectMeta [META]: every kind has it.
_OBJECT_META = {"metadata.finalizers": SCALARS, "metadata.ownerReferences": "uid"}


def _under(prefix: str, table: dict[str, str]) -> dict[str, str]:
    return {f"{prefix}.{path}": key for path, key in table.items()}


# Workloads embed a PodTemplateSpec at spec.template, and their status conditions merge by type:
# ReplicationControllerStatus [CORE], DeploymentStatus, ReplicaSetStatus, StatefulSetStatus,
# DaemonSetStatus [APPS], JobStatus [BATCH].
_WORKLOAD = {**_under("spec.template.spec", _POD_SPEC), "status.conditions": "type"}

MERGE_KEYS: dict[str, dict[str, str]] = {
    # PodStatus [CORE]: containerStatuses has no patchStrategy.
    "Pod": {
        **_under("spec", _POD_SPEC),
        "status.conditions": "type",
        "status.podIPs": "ip",
        "status.hostIPs": "ip",
        "status.resourceClaimStatuses": "name",  # merge,retainKeys
    },
    "PodTemplate": _under("template.spec", _POD_SPEC),
    **{
        kind: dict(_WORKLOAD)
        for kind in ("ReplicationController", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job")
    },
    "CronJob": _under("spec.jobTemplate.spec.template.spec", _POD_SPEC),  # CronJobSpec.JobTemplate [BATCH]
    # NodeSpec.PodCIDRs, NodeStatus.Conditions and .Addresses [CORE]; NodeSpec.Taints has no
    # patchStrategy: kubectl taint sends the whole list.
    "Node": {"spec.podCIDRs": SCALARS, "status.conditions": "type", "status.addresses": "type"},
    "Service": {"spec.ports": "port"},  # ServiceSpec.Ports [CORE]
    "Namespace": {"status.conditions": "type"},  # NamespaceStatus.Conditions [CORE]
    "PodDisruptionBudget": {"spec.selector": REPLACE},  # PodDisruptionBudgetSpec.Selector [POLICY]
}


# ----- RFC 6902 JSON patch -------------------------------------------------------------------------------
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


class _PointerError(PatchError):
    """A pointer that does not resolve; json_patch says which operation failed."""


def json_patch(document: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch, all or nothing, as the API server's evanphx/json-patch v4 does."""
    if not isinstance(operations, list):
        raise PatchError("json: cannot unmarshal a non-array into Go value of type jsonpatch.Patch")
    result = clone(document)
    for operation in clone(operations):
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            raise PatchError(f"invalid JSON patch operation: {operation}")
        try:
            result = _apply_operation(result, operation)
        except _PointerError as error:
            raise PatchError(
                f"error in {operation['op']} for path: '{operation['path']}': {error}"
            ) from error
    return result


def _apply_operation(document: Any, operation: dict[str, Any]) -> Any:
    # v4 takes a missing "value" for null, and lets replace create a missing key of an object.
    path, value = operation["path"], operation.get("value")
    match operation.get("op", "unknown"):
        case "add":
            return _put(document, path, value, insert=True)
        case "remove":
            _remove(document, path)
            return document
        case "replace":
            return _put(document, path, value, insert=False)
        case "move":
            return _put(document, path, _remove(document, _source(operation)), insert=True)
        case "copy":
            return _put(document, path, clone(_get(document, _source(operation))), insert=True)
        case "test":
            if not _json_equal(_get(document, path), value):
                raise PatchError(f"testing value {path} failed: test failed")
            return document
        case op:
            raise PatchError(f"Unexpected kind: {op}")


def _source(operation: dict[str, Any]) -> str:
    source = operation.get("from")
    if not isinstance(source, str):
        raise PatchError(f"{operation['op']} operation failed to decode from: missing value")
    return source


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _PointerError(f"doc is missing path: {pointer!r}: missing value")
    # RFC 6901: ~1 before ~0, so that "~01" stays the key "~1".
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _index(token: str, size: int) -> int:
    if not _ARRAY_INDEX.fullmatch(token) or int(token) >= size:
        raise _PointerError(f"Unable to access invalid index: {token}: invalid index referenced")
    return int(token)


def _walk(document: Any, tokens: list[str], pointer: str) -> Any:
    for token in tokens:
        if isinstance(document, list):
            document = document[_index(token, len(document))]
        elif isinstance(document, dict) and token in document:
            document = document[token]
        else:
            raise _PointerError(f"doc is missing path: {pointer!r}: missing value")
    return document


def _get(document: Any, pointer: str) -> Any:
    return _walk(document, _tokens(pointer), pointer)


def _parent(document: Any, pointer: str) -> tuple[Any, str]:
    """The container a non-root pointer points into, and the last token."""
    *path, last = _tokens(pointer)
    return _walk(document, path, pointer), last


def _put(document: Any, pointer: str, value: Any, *, insert: bool) -> Any:
    """add (insert) or replace: in an object both set the key; in an array add inserts, replace overwrites."""
    if pointer == "":
        return value
    parent, token = _parent(document, pointer)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list) and insert:
        parent.insert(len(parent) if token == "-" else _index(token, len(parent) + 1), value)
    elif isinstance(parent, list):
        parent[_index(token, len(parent))] = value
    else:
        raise _PointerError(f"doc is missing path: {pointer!r}: missing value")
    return document


def _remove(document: Any, pointer: str) -> Any:
    """Remove what the pointer points at and return it."""
    if pointer == "":
        raise _PointerError("the whole document cannot be removed")
    parent, token = _parent(document, pointer)
    if isinstance(parent, list):
        return parent.pop(_index(token, len(parent)))
    if isinstance(parent, dict) and token in parent:
        return parent.pop(token)
    raise _PointerError(f"Unable to remove nonexistent key: {token}: missing value")


def _json_equal(left: Any, right: Any) -> bool:
    """JSON equality: Python's == alone would take true for 1."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    return isinstance(left, bool) == isinstance(right, bool) and bool(left == right)


# ----- RFC 7386 JSON merge patch -------------------------------------------------------------------------
def merge_patch(document: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    return _merge(clone(document), clone(patch))


def merge_patch_sharing(document: Any, patch: Any) -> Any:
    """``merge_patch`` as a new value that shares with ``document`` every part the patch leaves alone:
    for a document that is never changed in place (a stored object), at the cost of the patch only."""
    if not isinstance(patch, dict):
        # Only lists need copying: strings, numbers, booleans and null are immutable.
        return clone(patch) if isinstance(patch, list) else patch
    merged = dict(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch_sharing(merged.get(key), value)
    return merged


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


# ----- Kubernetes strategic merge patch --------------------------------------------------------------------
_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ELEMENT_ORDER = "$setElementOrder"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"


def strategic_merge_patch(document: dict[str, Any], patch: dict[str, Any], kind: str) -> dict[str, Any]:
    """Apply a strategic merge patch to an object of the given kind; the result holds no $-directive."""
    if not isinstance(patch, dict):
        raise PatchError("invalid JSON document: a strategic merge patch must be an object")
    rules = {**_OBJECT_META, **MERGE_KEYS.get(kind, {})}
    return _merge_map(clone(document), clone(patch), "", rules)


def _merge_map(
    original: dict[str, Any], patch: dict[str, Any], path: str, rules: dict[str, str]
) -> dict[str, Any]:
    """Go's mergeMap; works on copies, so it may change both arguments."""
    if _PATCH in patch:
        directive = patch[_PATCH]
        if directive == "replace":
            replacement: dict[str, Any] = _without_directives(patch)  # which drops the $patch key too
            return replacement
        if directive == "delete":
            return {}
        raise PatchError(f"unknown patch type: {directive} in map: {patch}")
    _retain_keys(original, patch)
    orders = _pop_element_orders(original, patch, path, rules)
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM_PRIMITIVE_LIST):
            field = _directive_field(key, _DELETE_FROM_PRIMITIVE_LIST, "primitive list")
            # Since Kubernetes 1.25 this deletes whatever the field's strategy, and does nothing to
            # a missing list (it used to set the list to the values to delete).
            if isinstance(original.get(field), list) and isinstance(value, list):
                original[field] = [item for item in original[field] if item not in value]
            continue
        if key.startswith("$"):
            continue  # not a directive: the API server's decoder drops it as an unknown field
        child = f"{path}.{key}" if path else key
        current = original.get(key)
        if value is None:
            original.pop(key, None)
        elif isinstance(current, dict) and isinstance(value, dict) and rules.get(child) != REPLACE:
            original[key] = _merge_map(current, value, child, rules)
        elif isinstance(current, list) and isinstance(value, list) and rules.get(child, REPLACE) != REPLACE:
            original[key] = _merge_list(current, value, rules[child], child, rules)
        elif _is_directive_map(value):
            original.pop(key, None)  # a new value that is itself a $patch directive is dropped
        else:
            original[key] = _without_directives(value)
    for field, (order, live, merge_key) in orders.items():
        if isinstance(original.get(field), list):
            original[field] = _ordered(original[field], order, live, merge_key)
    return original


def _retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """$retainKeys names the only keys the map keeps (kubectl apply sends it for retainKeys fields,
    such as a Deployment's strategy, so that switching type drops the old type's settings)."""
    if _RETAIN_KEYS not in patch:
        return
    keep = patch.pop(_RETAIN_KEYS)
    if not isinstance(keep, list) or any(
        value is not None and not key.startswith("$") and key not in keep for key, value in patch.items()
    ):
        raise PatchError("invalid patch format of retainKeys")
    for key in [key for key in original if key not in keep]:
        del original[key]


def _pop_element_orders(
    original: dict[str, Any], patch: dict[str, Any], path: str, rules: dict[str, str]
) -> dict[str, tuple[list[Any], list[Any], str]]:
    """Take the $setElementOrder/<field> lists out of the patch, each with the live list it reorders and
    the list's merge key. kubectl apply sends them with every merging list it changes."""
    orders: dict[str, tuple[list[Any], list[Any], str]] = {}
    for key in [key for key in patch if key.startswith(_SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        field = _directive_field(key, _SET_ELEMENT_ORDER, "setElementOrder list")
        if not isinstance(order, list):
            raise PatchError("invalid patch format of setElementOrder list")
        merge_key = rules.get(f"{path}.{field}" if path else field, REPLACE)
        if merge_key == REPLACE:
            continue  # only a merging list has an order of its own to keep
        patch_list = patch.get(field)
        if isinstance(patch_list, list):
            _check_order(patch_list, order, merge_key)
        live = original.get(field)
        orders[field] = (order, live if isinstance(live, list) else [], merge_key)
    return orders


def _check_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """The patch's own items must appear in $setElementOrder, in the same order."""
    wanted = iter([_identity(item, merge_key) for item in order])
    if not all(_identity(item, merge_key) in wanted for item in patch_list if not _is_directive_map(item)):
        raise PatchError(
            f"the order in patch list:\n{patch_list}\n doesn't match {_SET_ELEMENT_ORDER} list:\n{order}"
        )


def _directive_field(key: str, prefix: str, what: str) -> str:
    """The field a parallel-list directive such as $setElementOrder/<field> is about."""
    head, slash, field = key.partition("/")
    if head != prefix or not slash:
        raise PatchError(f"invalid patch format of {what}")
    return field


def _merge_list(
    original: list[Any], patch: list[Any], merge_key: str, path: str, rules: dict[str, str]
) -> list[Any]:
    """Go's mergeSlice for a list with patchStrategy "merge"."""
    items = original + patch
    if not items:
        return original
    if len({type(item) for item in items}) > 1:
        raise PatchError(f"list element types are not identical: {items}")
    if isinstance(items[0], list):
        raise PatchError("lists of lists are not supported")
    if not isinstance(items[0], dict):
        return _ordered(list(dict.fromkeys(items)), patch, original, merge_key)
    if merge_key == SCALARS:
        raise PatchError(f"cannot merge lists without merge key for {path}")
    original, patch = _list_directives(original, patch, merge_key)
    merged = list(original)
    for item in patch:
        key = _identity(item, merge_key)
        match = next(
            (i for i, live in enumerate(merged) if merge_key in live and live[merge_key] == key), None
        )
        if match is None:
            merged.append(_without_directives(item))
        else:
            merged[match] = _merge_map(merged[match], item, path, rules)
    return _ordered(merged, patch, original, merge_key)


def _list_directives(
    original: list[dict[str, Any]], patch: list[dict[str, Any]], merge_key: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Apply the {"$patch": ...} items of a merging list; return the live list and the plain patch items."""
    plain: list[dict[str, Any]] = []
    replace = False
    for item in patch:
        directive = item.get(_PATCH)
        if _PATCH not in item:
            plain.append(item)
        elif directive == "delete":
            key = _identity(item, merge_key)
            original = [live for live in original if not (merge_key in live and live[merge_key] == key)]
        elif directive == "replace":
            replace = True  # the list becomes the patch's other items
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise PatchError(f"unknown patch type: {directive} in map: {item}")
    if replace:
        return [_without_directives(item) for item in plain], []
    return original, plain


def _identity(item: Any, merge_key: str) -> Any:
    """What identifies a list item: its merge key's value, or the item itself in a list of scalars."""
    if merge_key == SCALARS:
        return item
    if not isinstance(item, dict) or merge_key not in item:
        raise PatchError(f"map: {item} does not contain declared merge key: {merge_key}")
    return item[merge_key]


def _ordered(merged: list[Any], patch_order: list[Any], live_order: list[Any], merge_key: str) -> list[Any]:
    """Order a merged list as Go's normalizeElementOrder and mergeSortedSlice do. The items the patch names
    keep the patch's order, the others keep the live order, and the two are interleaved: a live-only item
    goes first only when the live list had it before the patch item it is compared with, so items new to
    the list come before the live items that follow them."""
    patch_ids = [_identity(item, merge_key) for item in patch_order]
    live_ids = [_identity(item, merge_key) for item in live_order]

    def place(ids: list[Any], item: Any) -> int:
        key = _identity(item, merge_key)
        return ids.index(key) if key in ids else len(ids)

    named = sorted(
        (item for item in merged if _identity(item, merge_key) in patch_ids),
        key=lambda i: place(patch_ids, i),
    )
    live_only = sorted(
        (item for item in merged if _identity(item, merge_key) not in patch_ids),
        key=lambda i: place(live_ids, i),
    )
    result: list[Any] = []
    while named and live_only:
        left, right = place(live_ids, live_only[0]), place(live_ids, named[0])
        result.append(live_only.pop(0) if left < right < len(live_ids) else named.pop(0))
    return result + live_only + named


def _is_directive_map(value: Any) -> bool:
    return isinstance(value, dict) and _PATCH in value


def _without_directives(value: Any) -> Any:
    """A patch value with nothing to merge into, cleaned as Go's discardNullValuesFromPatch and
    removeDirectives clean it: nulls in maps go, and so does any map carrying $patch. Other $-keys go too,
    as the API server's decoder would drop them as unknown fields."""
    if isinstance(value, dict):
        return {
            key: _without_directives(item)
            for key, item in value.items()
            if item is not None and not key.startswith("$") and not _is_directive_map(item)
        }
    if isinstance(value, list):
        return [_without_directives(item) for item in value if not _is_directive_map(item)]
    return value


def _ignore_kind(apply: Callable[[Any, Any], Any]) -> Callable[[Any, Any, str], Any]:
    return lambda document, patch, _kind: apply(document, patch)


# The PATCH content types the API server accepts for built-in kinds: (document, patch, kind) -> result.
PATCH_CONTENT_TYPES: dict[str, Callable[[Any, Any, str], Any]] = {
    "application/json-patch+json": _ignore_kind(json_patch),
    "application/merge-patch+json": _ignore_kind(merge_patch),
    "application/strategic-merge-patch+json": strategic_merge_patch,
}
