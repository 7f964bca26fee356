"""PATCH bodies as the sandbox's API server applies them: RFC 6902 JSON patch, RFC 7386 merge patch and
the Kubernetes strategic merge patch.

The strategic cases use the patches kubectl 1.32 really sends (recorded from `kubectl cordon`, `uncordon`,
`taint`, `label`, `annotate` and `apply` against a stub server) and expect what apimachinery's own
strategicpatch gives for them (checked with `kubectl patch --local --type strategic`), including the
order of merged lists: an item new to a merging list comes before the live items.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nodeswap.sandbox.kube.patch import (
    MERGE_KEYS,
    PATCH_CONTENT_TYPES,
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)


def directive_keys(value: Any) -> list[str]:
    """Every $-key anywhere in a JSON value."""
    if isinstance(value, dict):
        return [key for key in value if key.startswith("$")] + [
            key for item in value.values() for key in directive_keys(item)
        ]
    if isinstance(value, list):
        return [key for item in value for key in directive_keys(item)]
    return []


# ----- JSON patch ----------------------------------------------------------------------------------------
DOC: dict[str, Any] = {
    "labels": {"app": "web"},
    "annotations": {"example.com/owner": "ops", "tilde~key": "1"},
    "finalizers": ["f1", "f2"],
    "replicas": 1,
}


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        pytest.param(
            [{"op": "add", "path": "/labels/tier", "value": "db"}],
            {**DOC, "labels": {"app": "web", "tier": "db"}},
            id="add_sets_a_key",
        ),
        pytest.param(
            [{"op": "add", "path": "/finalizers/1", "value": "x"}],
            {**DOC, "finalizers": ["f1", "x", "f2"]},
            id="add_inserts_at_an_index",
        ),
        pytest.param(
            [{"op": "add", "path": "/finalizers/-", "value": "x"}],
            {**DOC, "finalizers": ["f1", "f2", "x"]},
            id="add_at_dash_appends",
        ),
        pytest.param(
            [{"op": "remove", "path": "/labels/app"}],
            {**DOC, "labels": {}},
            id="remove_deletes_a_key",
        ),
        pytest.param(
            [{"op": "replace", "path": "/finalizers/0", "value": "x"}],
            {**DOC, "finalizers": ["x", "f2"]},
            id="replace_overwrites_an_item",
        ),
        pytest.param(
            # evanphx/json-patch v4, which the API server uses, lets replace create an object's key.
            [{"op": "replace", "path": "/labels/tier", "value": "db"}],
            {**DOC, "labels": {"app": "web", "tier": "db"}},
            id="replace_creates_a_missing_key_as_the_api_server_does",
        ),
        pytest.param(
            [{"op": "move", "from": "/labels/app", "path": "/annotations/app"}],
            {**DOC, "labels": {}, "annotations": {**DOC["annotations"], "app": "web"}},
            id="move_removes_then_adds",
        ),
        pytest.param(
            [{"op": "copy", "from": "/finalizers", "path": "/saved"}],
            {**DOC, "saved": ["f1", "f2"]},
            id="copy_adds_a_copy",
        ),
        pytest.param(
            [
                {"op": "test", "path": "/labels/app", "value": "web"},
                {"op": "replace", "path": "/labels/app", "value": "api"},
            ],
            {**DOC, "labels": {"app": "api"}},
            id="test_that_passes_lets_the_rest_apply",
        ),
        pytest.param(
            [
                {"op": "remove", "path": "/annotations/example.com~1owner"},
                {"op": "replace", "path": "/annotations/tilde~0key", "value": "2"},
            ],
            {**DOC, "annotations": {"tilde~key": "2"}},
            id="pointer_escapes_slash_as_tilde_1_and_tilde_as_tilde_0",
        ),
        pytest.param(
            [{"op": "replace", "path": "", "value": {"new": True}}],
            {"new": True},
            id="replace_at_the_root_replaces_the_document",
        ),
    ],
)
def test_json_patch_applies_each_operation(operations: list[dict[str, Any]], expected: Any) -> None:
    assert json_patch(DOC, operations) == expected


@pytest.mark.parametrize(
    ("operations", "message"),
    [
        pytest.param(
            [{"op": "test", "path": "/labels/app", "value": "db"}],
            "testing value /labels/app failed: test failed",
            id="failing_test",
        ),
        pytest.param(
            [{"op": "test", "path": "/replicas", "value": True}],
            "testing value /replicas failed",
            id="test_tells_true_from_1",
        ),
        pytest.param(
            [{"op": "remove", "path": "/labels/nope"}],
            "Unable to remove nonexistent key: nope",
            id="remove_of_a_missing_key",
        ),
        pytest.param(
            [{"op": "add", "path": "/finalizers/3", "value": "x"}],
            "Unable to access invalid index: 3",
            id="index_past_the_end",
        ),
        pytest.param(
            [{"op": "remove", "path": "/finalizers/01"}],
            "invalid index",
            id="index_with_a_leading_zero",
        ),
        pytest.param(
            [{"op": "add", "path": "/spec/taints", "value": []}],
            "doc is missing path",
            id="add_under_a_missing_parent",
        ),
        pytest.param(
            [{"op": "move", "from": "/labels", "path": "/labels/inner"}],
            "doc is missing path",
            id="move_into_its_own_child",
        ),
        pytest.param([{"op": "frob", "path": "/labels"}], "Unexpected kind: frob", id="unknown_operation"),
        pytest.param(
            {"op": "add", "path": "/x", "value": 1}, "Go value of type jsonpatch.Patch", id="not_a_list"
        ),
    ],
)
def test_json_patch_rejects(operations: Any, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        json_patch(DOC, operations)


def test_json_patch_is_all_or_nothing_and_leaves_its_inputs_alone() -> None:
    document = copy.deepcopy(DOC)
    operations: list[dict[str, Any]] = [
        {"op": "add", "path": "/labels/tier", "value": {"nested": "x"}},
        {"op": "test", "path": "/replicas", "value": 2},
    ]
    with pytest.raises(PatchError):
        json_patch(document, operations)
    assert document == DOC
    result = json_patch(document, operations[:1])
    result["labels"]["tier"]["nested"] = "changed"
    assert operations[0]["value"] == {"nested": "x"}
    assert document == DOC


# ----- JSON merge patch ----------------------------------------------------------------------------------
NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "ip-10-0-1-5",
        "labels": {"role": "worker", "zone": "a"},
        "annotations": {"note": "x"},
        "finalizers": ["f1"],
    },
    "spec": {
        "unschedulable": True,
        "taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}],
    },
    "status": {
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}],
        "addresses": [
            {"type": "InternalIP", "address": "10.0.1.5"},
            {"type": "Hostname", "address": "ip-10-0-1-5"},
        ],
    },
}


@pytest.mark.parametrize(
    ("patch", "part", "expected"),
    [
        pytest.param(
            {"metadata": {"labels": {"zone": None, "pool": "blue"}}},  # what kubectl label sends
            "metadata",
            {**NODE["metadata"], "labels": {"role": "worker", "pool": "blue"}},
            id="null_deletes_a_key_and_objects_merge",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["f2"]}},
            "metadata",
            {**NODE["metadata"], "finalizers": ["f2"]},
            id="lists_are_replaced_not_merged",
        ),
        pytest.param(
            {"spec": {"extra": {"gone": None, "kept": 1}}},
            "spec",
            {**NODE["spec"], "extra": {"kept": 1}},
            id="nulls_in_a_new_object_are_dropped",
        ),
    ],
)
def test_merge_patch(patch: dict[str, Any], part: str, expected: Any) -> None:
    result = merge_patch(NODE, patch)
    assert result[part] == expected
    assert {key: value for key, value in result.items() if key != part} == {
        key: value for key, value in NODE.items() if key != part
    }


def test_merge_patch_that_is_not_an_object_replaces_the_document() -> None:
    assert merge_patch(NODE, ["a"]) == ["a"]


# ----- strategic merge patch -----------------------------------------------------------------------------
SCHEDULABLE_NODE = {**NODE, "spec": {"taints": NODE["spec"]["taints"]}}
TAINT = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}


def container(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": f"{name}:1", **fields}


POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-0", "namespace": "default"},
    "spec": {
        "containers": [
            container("app", env=[{"name": "A", "value": "1"}], ports=[{"containerPort": 80}]),
            container("sidecar"),
        ],
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
    },
    "status": {
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]
    },
}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 2,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"spec": {"containers": [container("app"), container("sidecar")]}},
    },
}

# (document, patch, the top-level part the patch changes, that part afterwards)
STRATEGIC_CASES = [
    pytest.param(
        SCHEDULABLE_NODE,
        {"spec": {"unschedulable": True}},
        "spec",
        {"taints": [TAINT], "unschedulable": True},
        id="kubectl_cordon_sets_unschedulable",
    ),
    pytest.param(
        # kubectl uncordon diffs the Node with unschedulable false, which omitempty drops: it sends null.
        NODE,
        {"spec": {"unschedulable": None}},
        "spec",
        {"taints": [TAINT]},
        id="kubectl_uncordon_sends_null_which_removes_unschedulable",
    ),
    pytest.param(
        # NodeSpec.Taints has no patchStrategy, so kubectl taint sends the whole new list.
        NODE,
        {"spec": {"taints": [{"effect": "NoExecute", "key": "k2", "value": "v2"}, TAINT]}},
        "spec",
        {"unschedulable": True, "taints": [{"effect": "NoExecute", "key": "k2", "value": "v2"}, TAINT]},
        id="kubectl_taint_replaces_the_taints_list",
    ),
    pytest.param(
        NODE,
        {"spec": {"taints": None}},
        "spec",
        {"unschedulable": True},
        id="kubectl_taint_removing_the_last_taint_sends_null",
    ),
    pytest.param(
        NODE,
        {"metadata": {"labels": {"zone": None, "pool": "blue"}, "annotations": {"note": None}}},
        "metadata",
        {**NODE["metadata"], "labels": {"role": "worker", "pool": "blue"}, "annotations": {}},
        id="labels_and_annotations_added_and_removed_with_null",
    ),
    pytest.param(
        NODE,
        {"metadata": {"finalizers": ["f2"]}},
        "metadata",
        {**NODE["metadata"], "finalizers": ["f2", "f1"]},
        id="finalizers_merge_as_a_set_with_new_ones_first",
    ),
    pytest.param(
        NODE,
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}},
        "metadata",
        {**NODE["metadata"], "finalizers": []},
        id="delete_from_primitive_list_removes_a_finalizer",
    ),
    pytest.param(
        NODE,
        {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}},
        "status",
        {
            **NODE["status"],
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
                {"type": "MemoryPressure", "status": "False"},
            ],
        },
        id="node_conditions_merge_by_type",
    ),
    pytest.param(
        NODE,
        {"status": {"addresses": [{"type": "ExternalIP", "address": "3.3.3.3"}]}},
        "status",
        {
            **NODE["status"],
            "addresses": [{"type": "ExternalIP", "address": "3.3.3.3"}, *NODE["status"]["addresses"]],
        },
        id="node_addresses_merge_by_type",
    ),
    pytest.param(
        POD,
        {"spec": {"containers": [{"name": "sidecar", "image": "sidecar:2"}]}},
        "spec",
        {
            **POD["spec"],
            "containers": [POD["spec"]["containers"][0], container("sidecar", image="sidecar:2")],
        },
        id="container_merges_by_name_and_keeps_the_other_containers",
    ),
    pytest.param(
        POD,
        {"spec": {"containers": [container("debug")]}},
        "spec",
        {**POD["spec"], "containers": [container("debug"), *POD["spec"]["containers"]]},
        id="added_container_comes_first",
    ),
    pytest.param(
        POD,
        {
            "spec": {
                "containers": [
                    {"name": "app", "env": [{"name": "A", "value": "2"}], "ports": [{"containerPort": 443}]}
                ]
            }
        },
        "spec",
        {
            **POD["spec"],
            "containers": [
                container(
                    "app",
                    env=[{"name": "A", "value": "2"}],
                    ports=[{"containerPort": 443}, {"containerPort": 80}],
                ),
                container("sidecar"),
            ],
        },
        id="env_merges_by_name_and_ports_by_container_port",
    ),
    pytest.param(
        POD,
        {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}},
        "spec",
        {**POD["spec"], "containers": [POD["spec"]["containers"][0]]},
        id="patch_delete_removes_a_list_item",
    ),
    pytest.param(
        POD,
        {"spec": {"containers": [{"$patch": "replace"}, container("only")]}},
        "spec",
        {**POD["spec"], "containers": [container("only")]},
        id="patch_replace_item_replaces_a_merging_list",
    ),
    pytest.param(
        NODE,
        {"metadata": {"labels": {"$patch": "replace", "pool": "blue"}}},
        "metadata",
        {**NODE["metadata"], "labels": {"pool": "blue"}},
        id="patch_replace_replaces_a_map",
    ),
    pytest.param(
        NODE,
        {"metadata": {"labels": {"$patch": "delete"}}},
        "metadata",
        {**NODE["metadata"], "labels": {}},
        id="patch_delete_empties_a_map",
    ),
    pytest.param(
        # PodSpec.Tolerations has no patchStrategy.
        POD,
        {"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}},
        "spec",
        {**POD["spec"], "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
        id="tolerations_are_replaced_not_merged",
    ),
    pytest.param(
        # What kubectl apply sent to drop container "app", change "sidecar" and add "extra".
        POD,
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "extra"}, {"name": "sidecar"}],
                "containers": [
                    {"image": "extra:1", "name": "extra"},
                    {"image": "sidecar:2", "name": "sidecar"},
                    {"$patch": "delete", "name": "app"},
                ],
            }
        },
        "spec",
        {**POD["spec"], "containers": [container("extra"), container("sidecar", image="sidecar:2")]},
        id="kubectl_apply_set_element_order_and_delete_directive",
    ),
    pytest.param(
        POD,
        {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}},
        "spec",
        {**POD["spec"], "containers": POD["spec"]["containers"][::-1]},
        id="set_element_order_alone_reorders_a_list",
    ),
    pytest.param(
        POD,
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        "status",
        {"conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]},
        id="pod_conditions_merge_by_type",
    ),
    pytest.param(
        DEPLOYMENT,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}},
        "spec",
        {
            **DEPLOYMENT["spec"],
            "template": {"spec": {"containers": [container("app", image="app:2"), container("sidecar")]}},
        },
        id="deployment_pod_template_containers_merge_by_name",
    ),
    pytest.param(
        # kubectl apply sends $retainKeys for DeploymentSpec.Strategy (patchStrategy retainKeys).
        DEPLOYMENT,
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        "spec",
        {**DEPLOYMENT["spec"], "strategy": {"type": "Recreate"}},
        id="retain_keys_drops_the_keys_it_does_not_name",
    ),
    pytest.param(
        {
            **NODE,
            "metadata": {"name": "n", "ownerReferences": [{"kind": "Machine", "name": "m1", "uid": "1"}]},
        },
        {
            "metadata": {
                "ownerReferences": [{"kind": "Machine", "name": "m1", "uid": "1", "controller": True}]
            }
        },
        "metadata",
        {"name": "n", "ownerReferences": [{"kind": "Machine", "name": "m1", "uid": "1", "controller": True}]},
        id="owner_references_merge_by_uid",
    ),
    pytest.param(
        {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}},
        {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}},
        "spec",
        {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]},
        id="service_ports_merge_by_port",
    ),
    pytest.param(
        {"kind": "PodDisruptionBudget", "spec": {"selector": {"matchLabels": {"app": "web"}}}},
        {"spec": {"selector": {"matchLabels": {"app": "api"}}}},
        "spec",
        {"selector": {"matchLabels": {"app": "api"}}},
        id="pdb_selector_is_replaced_whole",
    ),
    pytest.param(
        {"kind": "Widget", "spec": {"items": [{"name": "x"}]}},
        {"spec": {"items": [{"name": "y"}]}},
        "spec",
        {"items": [{"name": "y"}]},
        id="unknown_kind_replaces_lists",
    ),
    pytest.param(
        SCHEDULABLE_NODE,
        {
            "spec": {
                "podCIDRs": ["10.0.1.0/24"],
                "extra": {"gone": None, "nested": {"$patch": "delete"}, "kept": 1},
            }
        },
        "spec",
        {**SCHEDULABLE_NODE["spec"], "podCIDRs": ["10.0.1.0/24"], "extra": {"kept": 1}},
        id="new_value_drops_nulls_and_directives",
    ),
]


@pytest.mark.parametrize(("document", "patch", "part", "expected"), STRATEGIC_CASES)
def test_strategic_merge_patch(
    document: dict[str, Any], patch: dict[str, Any], part: str, expected: Any
) -> None:
    result = strategic_merge_patch(document, patch, document["kind"])
    assert result[part] == expected
    assert {key: value for key, value in result.items() if key != part} == {
        key: value for key, value in document.items() if key != part
    }
    assert directive_keys(result) == []


def test_strategic_merge_patch_of_an_unknown_kind_still_merges_metadata() -> None:
    widget = {"kind": "Widget", "metadata": {"finalizers": ["a"]}}
    assert strategic_merge_patch(widget, {"metadata": {"finalizers": ["b"]}}, "Widget") == {
        "kind": "Widget",
        "metadata": {"finalizers": ["b", "a"]},
    }


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        pytest.param(
            {"spec": {"containers": [{"image": "x"}]}},
            "does not contain declared merge key: name",
            id="item_without_its_merge_key",
        ),
        pytest.param(
            {"spec": {"$patch": "bogus"}}, "unknown patch type: bogus", id="unknown_patch_directive"
        ),
        pytest.param(
            {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                    "containers": [{"name": "sidecar", "image": "s"}, {"name": "app", "image": "a"}],
                }
            },
            "doesn't match \\$setElementOrder list",
            id="set_element_order_that_contradicts_the_patch",
        ),
        pytest.param(
            {"spec": {"$retainKeys": ["containers"], "tolerations": []}},
            "invalid patch format of retainKeys",
            id="retain_keys_that_omits_a_patched_key",
        ),
        pytest.param(
            {"spec": {"$setElementOrder": []}},
            "invalid patch format of setElementOrder list",
            id="set_element_order_without_a_field",
        ),
    ],
)
def test_strategic_merge_patch_rejects(patch: dict[str, Any], message: str) -> None:
    with pytest.raises(PatchError, match=message):
        strategic_merge_patch(POD, patch, "Pod")


def test_strategic_merge_patch_leaves_its_inputs_alone() -> None:
    document, patch = copy.deepcopy(POD), {"spec": {"containers": [{"name": "app", "$patch": "delete"}]}}
    given = copy.deepcopy(patch)
    result = strategic_merge_patch(document, patch, "Pod")
    result["spec"]["containers"][0]["image"] = "changed"
    assert (document, patch) == (POD, given)


def test_merge_key_table_gives_workloads_the_pod_spec_keys() -> None:
    # From the Go struct tags: Container.Env merges by name, PodSpec.Tolerations has no patchStrategy.
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        assert MERGE_KEYS[kind]["spec.template.spec.containers.env"] == "name"
        assert MERGE_KEYS[kind]["spec.template.spec.initContainers.volumeMounts"] == "mountPath"
        assert "spec.template.spec.tolerations" not in MERGE_KEYS[kind]
    assert MERGE_KEYS["CronJob"]["spec.jobTemplate.spec.template.spec.containers"] == "name"
    assert "spec.taints" not in MERGE_KEYS["Node"]


@pytest.mark.parametrize(
    ("content_type", "patch", "expected_labels"),
    [
        (
            "application/json-patch+json",
            [{"op": "remove", "path": "/metadata/labels/zone"}],
            {"role": "worker"},
        ),
        ("application/merge-patch+json", {"metadata": {"labels": {"zone": None}}}, {"role": "worker"}),
        (
            "application/strategic-merge-patch+json",
            {"metadata": {"labels": {"zone": None}}},
            {"role": "worker"},
        ),
    ],
)
def test_patch_content_types_apply_their_own_kind_of_patch(
    content_type: str, patch: Any, expected_labels: dict[str, str]
) -> None:
    assert PATCH_CONTENT_TYPES[content_type](NODE, patch, "Node")["metadata"]["labels"] == expected_labels
