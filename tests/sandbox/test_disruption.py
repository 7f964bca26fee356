"""PDB arithmetic of the sandbox's disruption controller and eviction subresource, table-tested against
the documented formulas (https://kubernetes.io/docs/tasks/run-application/configure-pdb/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nodeswap.sandbox.kube.disruption import ScaleUnknown, budget_status, judge_eviction, scaled

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def pod(
    name: str, *, ready: bool = True, deleting: bool = False, owner: str | None = "rs-1"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T12:00:00Z"
    status = "True" if ready else "False"
    return {
        "metadata": meta,
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": status}]},
    }


def pdb(spec: dict[str, Any], status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": "web", "generation": generation}, "spec": spec, "status": status or {}}


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [(3, 10, 3), ("50%", 10, 5), ("25%", 10, 3), ("1%", 10, 1), ("0%", 10, 0), ("100%", 7, 7), ("34%", 3, 2)],
)
def test_percentages_round_up(value: int | str, total: int, expected: int) -> None:
    assert scaled(value, total) == expected


@pytest.mark.parametrize(
    ("spec", "replicas", "ready", "expected"),
    [
        # (expected pods, desired healthy, current healthy, disruptions allowed)
        ({"minAvailable": 2}, 3, 3, (3, 2, 3, 1)),
        ({"minAvailable": 3}, 3, 3, (3, 3, 3, 0)),
        ({"minAvailable": 2}, 3, 2, (3, 2, 2, 0)),
        ({"minAvailable": 5}, 3, 3, (3, 5, 3, 0)),
        ({"minAvailable": "50%"}, 4, 4, (4, 2, 4, 2)),
        ({"minAvailable": "50%"}, 3, 3, (3, 2, 3, 1)),  # 1.5 rounds up to 2
        ({"maxUnavailable": 1}, 30, 30, (30, 29, 30, 1)),
        ({"maxUnavailable": 0}, 3, 3, (3, 3, 3, 0)),
        ({"maxUnavailable": "25%"}, 10, 10, (10, 7, 10, 3)),  # 2.5 unavailable rounds up to 3
        ({"maxUnavailable": 1}, 3, 2, (3, 2, 2, 0)),
        ({"maxUnavailable": 5}, 3, 3, (3, 0, 3, 3)),
    ],
)
def test_budget_status(
    spec: dict[str, Any], replicas: int, ready: int, expected: tuple[int, int, int, int]
) -> None:
    pods = [pod(f"p{i}", ready=i < ready) for i in range(replicas)]
    status = budget_status(pdb(spec), pods, lambda _pod: ("deploy", replicas), NOW)
    assert (
        status.expected_pods,
        status.desired_healthy,
        status.current_healthy,
        status.disruptions_allowed,
    ) == expected


def test_expected_pods_come_from_the_controllers_scale_for_max_unavailable() -> None:
    # The Deployment wants 5 but only 3 pods exist yet: maxUnavailable counts against 5.
    pods = [pod(f"p{i}") for i in range(3)]
    status = budget_status(pdb({"maxUnavailable": 1}), pods, lambda _pod: ("deploy", 5), NOW)
    assert (status.expected_pods, status.desired_healthy, status.disruptions_allowed) == (5, 4, 0)


def test_terminating_and_disrupted_pods_are_not_healthy() -> None:
    pods = [pod("a"), pod("b", deleting=True), pod("c"), pod("d")]
    recent = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stale = (NOW - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = budget_status(
        pdb({"minAvailable": 1}, {"disruptedPods": {"c": recent, "d": stale, "b": recent}}),
        pods,
        lambda _p: ("deploy", 4),
        NOW,
    )
    # a healthy; b terminating; c recently evicted (still counted as disrupted); d's entry expired.
    assert status.current_healthy == 2
    assert status.disrupted_pods == {"c": recent}


def test_no_expected_pods_allows_nothing() -> None:
    assert (
        budget_status(pdb({"maxUnavailable": 1}), [], lambda _p: ("deploy", 0), NOW).disruptions_allowed == 0
    )


def test_a_deployment_counts_once_however_many_replicasets_it_has() -> None:
    # Mid-rollout: three pods of the old ReplicaSet, three of the new, one Deployment of 3 replicas.
    pods = [pod(f"old{i}", owner="rs-old") for i in range(3)] + [
        pod(f"new{i}", owner="rs-new") for i in range(3)
    ]
    status = budget_status(pdb({"maxUnavailable": 1}), pods, lambda _pod: ("deploy", 3), NOW)
    assert (status.expected_pods, status.desired_healthy) == (3, 2)


def test_pods_without_a_controller_are_left_out_of_the_expected_count() -> None:
    pods = [pod("a"), pod("b"), pod("bare", owner=None)]
    status = budget_status(pdb({"maxUnavailable": 1}), pods, lambda _p: ("deploy", 2), NOW)
    assert (status.expected_pods, status.desired_healthy, status.current_healthy) == (2, 1, 3)
    assert status.unmanaged_pods == ("bare",)


def test_percentage_budgets_need_a_controller_scale() -> None:
    def unknown(_pod: dict[str, Any]) -> tuple[str, int]:
        raise ScaleUnknown('found no controllers for pod "a"')

    with pytest.raises(ScaleUnknown):
        budget_status(pdb({"maxUnavailable": "50%"}), [pod("a")], unknown, NOW)


@pytest.mark.parametrize(
    ("target", "pdbs", "code"),
    [
        (pod("a"), [], 201),
        (pod("a"), [pdb({}, {"disruptionsAllowed": 1, "observedGeneration": 1})], 201),
        (
            pod("a"),
            [
                pdb(
                    {},
                    {
                        "disruptionsAllowed": 0,
                        "desiredHealthy": 2,
                        "currentHealthy": 2,
                        "observedGeneration": 1,
                    },
                )
            ],
            429,
        ),
        (pod("a"), [pdb({}, {"disruptionsAllowed": 1, "observedGeneration": 1}, generation=2)], 429),
        (pod("a"), [pdb({}), pdb({})], 500),
        (pod("a", deleting=True), [pdb({}, {"disruptionsAllowed": 0, "observedGeneration": 1})], 201),
        (
            pod("a", ready=False),
            [
                pdb(
                    {},
                    {
                        "disruptionsAllowed": 0,
                        "desiredHealthy": 2,
                        "currentHealthy": 2,
                        "observedGeneration": 1,
                    },
                )
            ],
            201,
        ),
        (
            pod("a", ready=False),
            [
                pdb(
                    {},
                    {
                        "disruptionsAllowed": 0,
                        "desiredHealthy": 2,
                        "currentHealthy": 1,
                        "observedGeneration": 1,
                    },
                )
            ],
            429,
        ),
        (
            pod("a", ready=False),
            [
                pdb(
                    {"unhealthyPodEvictionPolicy": "AlwaysAllow"},
                    {"disruptionsAllowed": 0, "observedGeneration": 1},
                )
            ],
            201,
        ),
    ],
)
def test_eviction_verdicts(target: dict[str, Any], pdbs: list[dict[str, Any]], code: int) -> None:
    assert judge_eviction(target, pdbs).code == code


def test_refusal_names_the_budget_and_its_numbers() -> None:
    verdict = judge_eviction(
        pod("a"),
        [
            pdb(
                {},
                {"disruptionsAllowed": 0, "desiredHealthy": 3, "currentHealthy": 3, "observedGeneration": 1},
            )
        ],
    )
    assert verdict.message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert verdict.cause == "The disruption budget web needs 3 healthy pods and has 3 currently"
    assert (
        judge_eviction(pod("a"), [pdb({}, {"disruptionsAllowed": 1, "observedGeneration": 1})]).charge
        is not None
    )
