"""The sandbox's own reading of pod specs against nodes, rule by rule as the Kubernetes sources have it
(the product's fit check is judged against it, so it is checked here on its own)."""

from __future__ import annotations

import pytest

from nodeswap.sandbox.kube.podspec import pod_requests, quantity, selects_node, tolerates

GI = 2.0**30


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", 0.25),
        ("1.5", 1.5),
        ("2Gi", 2 * GI),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("500u", 0.0005),
        ("1k", 1000.0),
        (".5", 0.5),
        (3, 3.0),
    ],
)
def test_quantities_in_every_suffix_form(text: str | int, value: float) -> None:
    assert quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "1 Gi", "1GB", "one", "1e"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        quantity(text)


def container(cpu: str, memory: str = "0", **extra: str) -> dict[str, object]:
    return {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}, **extra}


def test_a_pods_requests_count_sidecars_with_its_containers_and_its_largest_init_container() -> None:
    spec = {
        "containers": [container("1"), container("500m")],
        # A sidecar runs beside the containers; the init container after it runs with the sidecar.
        "initContainers": [container("250m", restartPolicy="Always"), container("3")],
        "overhead": {"cpu": "100m"},
    }
    # max(1 + 0.5 + 0.25, 3 + 0.25) + 0.1
    assert pod_requests(spec)[0] == pytest.approx(3.35)


def test_scoring_counts_a_missing_request_as_the_default() -> None:
    spec = {"containers": [{"name": "bare"}, container("1", "1Gi")]}
    assert pod_requests(spec, {"cpu": 0.1, "memory": 200 * 2.0**20}) == pytest.approx(
        (1.1, GI + 200 * 2.0**20)
    )
    assert pod_requests(spec) == pytest.approx((1.0, GI))


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, True),
        ({"key": "dedicated", "value": "gpu"}, True),  # no operator is Equal; no effect, any effect
        ({"key": "dedicated", "operator": "Equal", "value": "cpu"}, False),
        ({"key": "dedicated", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # no key with Exists tolerates every taint
        ({"operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_tolerations_against_a_taint(toleration: dict[str, str], expected: bool) -> None:
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert tolerates(toleration, taint) is expected


NODE = {"metadata": {"name": "ip-10-0-0-1", "labels": {"zone": "a", "cores": "8"}}}


def affinity(*terms: dict[str, object]) -> dict[str, object]:
    return {"nodeSelectorTerms": list(terms)}


@pytest.mark.parametrize(
    ("node_selector", "required", "expected"),
    [
        ({"zone": "a"}, None, True),
        ({"zone": "b"}, None, False),
        ({}, affinity({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}), True),
        ({}, affinity({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}), False),
        (
            {},
            affinity(
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["ip-10-0-0-1"]}]},
            ),
            True,  # terms are ORed
        ),
        ({}, affinity({}), False),  # an empty term selects nothing
        ({}, affinity({"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}), False),
        ({}, affinity({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}), True),
    ],
)
def test_node_selector_and_required_node_affinity(
    node_selector: dict[str, str], required: dict[str, object] | None, expected: bool
) -> None:
    assert selects_node(node_selector, required, NODE) is expected
