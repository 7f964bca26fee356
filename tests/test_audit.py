"""The planner's fit check, zero-downtime audit and estimate, on snapshots built in memory. No I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from nodeswap.audit import (
    Fit,
    Index,
    Selecting,
    audit,
    eks_allocatable,
    estimate,
    fit,
    new_node,
    selects,
    serializing,
)
from nodeswap.model import (
    Budget,
    Group,
    Instance,
    LaunchSpec,
    Node,
    Owner,
    Pod,
    Resources,
    Service,
    Snapshot,
    Taint,
)
from nodeswap.plan import Settings, plan_group, waves

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
V1, V2 = LaunchSpec("lt-1", "workers", "1"), LaunchSpec("lt-1", "workers", "2")
GIB = 2.0**30
LARGE = Resources(1.93, 7.0 * GIB, 29)


def instance(name: str, zone: str = "us-east-1a", launch: LaunchSpec = V1) -> Instance:
    return Instance(name, zone, "InService", True, launch, T0, "ami-old", "m5.large")


def node(name: str, labels: dict[str, str] | None = None, **fields: object) -> Node:
    base = {"kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "m5.large", "pool": "a"}
    made = Node(
        name,
        f"aws:///us-east-1a/i-{name}",
        True,
        labels={**base, **(labels or {})},
        allocatable=LARGE,
        created_at=T0 + timedelta(seconds=60),
        ready_since=T0 + timedelta(seconds=70),
    )
    return replace(made, **fields)


def group(*instances: Instance, zones: tuple[str, ...] = ("us-east-1a", "us-east-1b")) -> Group:
    return Group("workers", 1, 10, len(instances), V2, instances, zones=zones, instance_types=("m5.large",))


def pod(name: str, on: str, app: str = "web", kind: str = "ReplicaSet", **fields: object) -> Pod:
    made = Pod(
        "default",
        name,
        f"uid-{name}",
        on,
        {"app": app},
        owner=Owner(kind, f"{app}-abc" if kind == "ReplicaSet" else app),
        requests=Resources(0.5, 1 * GIB, 1),
        readiness_probe=True,
        pre_stop=True,
        pre_stop_seconds=5,
        grace_seconds=30,
        created_at=T0,
        ready_since=T0 + timedelta(seconds=8),
    )
    return replace(made, **fields)


def budget(app: str, expected: int, desired: int) -> Budget:
    return Budget(
        "default", app, {"matchLabels": {"app": app}}, expected_pods=expected, desired_healthy=desired
    )


WEB = {"default/ReplicaSet/web-abc": Owner("Deployment", "web")}


def test_eks_allocatable_reserves_as_the_eks_ami_does() -> None:
    allocatable = eks_allocatable(Resources(2, 8192 * 2**20, 29))
    assert allocatable.cpu == pytest.approx(1.93)  # 60m for the first core, 10m for the second
    assert allocatable.memory == (8192 - 255 - 11 * 29 - 100) * 2**20
    assert allocatable.pods == 29


def test_a_new_node_shares_the_groups_labels_and_taints_and_gets_the_new_type() -> None:
    dedicated = Taint("dedicated", "NoSchedule", "batch")
    nodes = [
        node("n1", {"only-here": "x"}, taints=(dedicated, Taint("nodeswap.io/retiring", "NoSchedule"))),
        node("n2", taints=(dedicated,)),
    ]
    g = replace(group(instance("i-n1"), instance("i-n2")), instance_types=("m5.xlarge",))
    new = new_node(g, nodes, nodes, {"m5.xlarge": Resources(4, 16 * GIB, 58)})
    assert new is not None
    assert new.instance_type == "m5.xlarge"
    assert "estimated" in new.source
    assert [labels["topology.kubernetes.io/zone"] for labels in new.labels] == ["us-east-1a", "us-east-1b"]
    assert all(labels["node.kubernetes.io/instance-type"] == "m5.xlarge" for labels in new.labels)
    assert all("only-here" not in labels and "kubernetes.io/hostname" not in labels for labels in new.labels)
    assert new.taints == ({"key": "dedicated", "value": "batch", "effect": "NoSchedule"},)


def test_a_reported_allocatable_wins_over_the_estimate() -> None:
    nodes = [node("n1")]
    new = new_node(group(instance("i-n1")), nodes, nodes, {"m5.large": Resources(2, 8 * GIB, 29)})
    assert new is not None
    assert new.allocatable == LARGE
    assert new.source == "as node n1 reports it"


def fit_of(pods: list[Pod], staying: list[Node] | None = None, new_nodes: int = 1) -> tuple[Fit, list[str]]:
    nodes = [node("n1", {"only-here": "x"}), node("n2")]
    g = group(instance("i-n1"), instance("i-n2"))
    new = new_node(g, nodes, nodes, {})
    result, blockers = fit(
        new,
        [pods],
        launched=[new_nodes],
        daemonsets=Resources(0.1, 0.1 * GIB, 1),
        staying=staying or [],
        snapshot=Snapshot(tuple(nodes), tuple(pods)),
    )
    return result, [b.subject for b in blockers]


def test_pods_that_fit_the_new_nodes() -> None:
    result, blockers = fit_of([pod("a", "n1"), pod("b", "n2")])
    assert blockers == []
    assert result.fits is True


def test_a_pod_selecting_a_label_only_an_old_node_has_fits_nowhere() -> None:
    pinned = pod("pinned", "n1", node_selector={"only-here": "x"})
    result, blockers = fit_of([pinned])
    assert blockers == ["pod default/pinned"]
    assert "nodeSelector only-here=x" in result.unplaceable[0][1]


def test_a_remaining_node_with_the_label_and_room_takes_it() -> None:
    pinned = pod("pinned", "n1", node_selector={"only-here": "x"})
    other = replace(node("other", {"only-here": "x"}), provider_id="aws:///us-east-1a/i-other")
    assert fit_of([pinned], staying=[other])[1] == []


def test_a_pod_larger_than_a_new_node_fits_nowhere() -> None:
    result, blockers = fit_of([pod("big", "n1", requests=Resources(0.5, 7.5 * GIB, 1))])
    assert blockers == ["pod default/big"]
    assert "more memory" in result.unplaceable[0][1]


def test_a_taint_the_pod_does_not_tolerate() -> None:
    nodes = [node("n1", taints=(Taint("dedicated", "NoSchedule", "batch"),))]
    new = new_node(group(instance("i-n1")), nodes, nodes, {})
    intolerant, tolerant = (
        pod("a", "n1"),
        pod("b", "n1", tolerations=({"key": "dedicated", "operator": "Equal", "value": "batch"},)),
    )
    _, blockers = fit(
        new,
        [[intolerant, tolerant]],
        launched=[1],
        daemonsets=Resources(),
        staying=[],
        snapshot=Snapshot(tuple(nodes)),
    )
    assert [b.subject for b in blockers] == ["pod default/a"]
    assert "taint dedicated=batch:NoSchedule" in blockers[0].cause


def test_a_total_short_of_room_is_shown_not_blocked() -> None:
    crowd = [pod(f"p{i}", "n1", requests=Resources(0.5, 1 * GIB, 1)) for i in range(5)]  # 2.5 CPU > 1.83
    result, blockers = fit_of(crowd)
    assert blockers == []
    assert result.fits is False


def findings(
    pods: list[Pod], snapshot_pods: list[Pod] | None = None, **snapshot: object
) -> set[tuple[str, str]]:
    index = Index(Snapshot(pods=tuple(snapshot_pods or pods), controllers=WEB, **snapshot))  # type: ignore[arg-type]
    return {(f.check, f.subject) for f in audit(pods, index)}


def test_a_well_prepared_workload_has_no_warnings() -> None:
    pods = [pod("a", "n1"), pod("b", "n2")]
    assert (
        findings(pods, budgets=(budget("web", 2, 1),), services=(Service("default", "web", {"app": "web"}),))
        == set()
    )


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"readiness_probe": False}, "no-readiness-probe"),
        ({"pre_stop": False, "pre_stop_seconds": 0}, "no-prestop"),
        ({"grace_seconds": 5}, "grace-not-above-prestop"),
    ],
)
def test_each_warning_names_the_workload(change: dict[str, object], check: str) -> None:
    pods = [pod("a", "n1", **change), pod("b", "n2")]
    found = findings(
        pods, budgets=(budget("web", 2, 1),), services=(Service("default", "web", {"app": "web"}),)
    )
    assert found == {(check, "Deployment default/web")}


def test_single_replica_and_no_budget() -> None:
    assert findings([pod("a", "n1")]) == {
        ("single-replica", "Deployment default/web"),
        ("no-pdb", "Deployment default/web"),
    }


def test_one_at_a_time_over_several_nodes_serializes_the_drain() -> None:
    pods = [pod("a", "n1"), pod("b", "n2")]
    index = Index(Snapshot(pods=tuple(pods), budgets=(budget("web", 2, 1),)))
    found = serializing(pods, {"n1", "n2"}, index, None)
    assert [(f.check, f.subject) for f in found] == [
        ("pdb-serializes-drain", "PodDisruptionBudget default/web")
    ]
    assert "2 rounds" in found[0].cause
    assert (
        serializing(
            pods, {"n1", "n2"}, Index(Snapshot(pods=tuple(pods), budgets=(budget("web", 2, 0),))), None
        )
        == []
    )


def test_the_estimate_uses_measured_join_and_pod_start_times() -> None:
    g = dataclasses.replace(group(instance("i-n1"), instance("i-n2")), reaction_seconds=12.0)
    nodes = {"i-n1": node("n1"), "i-n2": node("n2")}
    web = [pod(f"w{i}", "n1" if i % 2 else "n2") for i in range(6)]  # 8 s to Ready, 2 at a time
    db = [
        pod(f"d{i}", "n1", app="db", kind="StatefulSet") for i in range(2)
    ]  # 8 s + 5 s preStop, 1 at a time
    index = Index(
        Snapshot(pods=tuple(web + db), budgets=(budget("web", 6, 4), budget("db", 2, 1)), controllers=WEB)
    )
    result = estimate(g, nodes, [web + db], index)
    assert result.join_seconds == 82  # Auto Scaling's 12 s, 60 s launch to Node, 10 s to Ready
    assert "Auto Scaling starts a wave's launches as soon" in result.assumptions[1]
    assert [(p.budget, p.rounds, p.round_seconds) for p in result.paces] == [
        ("default/db", 2, 13.0),  # slowest first
        ("default/web", 3, 8.0),
    ]
    assert result.seconds == 82 + 26
    assert result.critical_path == (
        "new nodes Ready in 82 s, then PodDisruptionBudget default/db: 2 pods, 1 at a time, 2 rounds of 13 s"
    )


def test_without_measurements_the_estimate_states_its_assumptions() -> None:
    g = group(instance("i-n1"))
    unmeasured = pod("a", "n1", created_at=None, ready_since=None, readiness_delay=3)
    result = estimate(
        g, {"i-n1": node("n1", created_at=None)}, [[unmeasured]], Index(Snapshot(pods=(unmeasured,)))
    )
    assert result.join_seconds == 120 + 15  # and Auto Scaling's reaction, as AWS shows it
    assert "no instance of the group to measure" in result.assumptions[0]
    assert "(no recent launch of the group to measure)" in result.assumptions[1]
    assert result.seconds == 135 + 5  # no budget: the node goes once the pod's preStop is over


def test_waves_put_an_interrupted_wave_first() -> None:
    assert waves(["i-c", "i-a", "i-b"], {"i-c"}, None, 3) == [["i-c", "i-a", "i-b"]]
    assert waves(["i-c", "i-a", "i-b"], {"i-c"}, 2, 3) == [["i-c", "i-a"], ["i-b"]]
    assert waves(["i-a", "i-b", "i-c", "i-d"], set(), "50%", 4) == [["i-a", "i-b"], ["i-c", "i-d"]]


def test_a_budget_selecting_no_pods_blocks() -> None:
    g = group(instance("i-n1"))
    snapshot = Snapshot(
        (node("n1", provider_id="aws:///us-east-1a/i-n1"),), (pod("a", "n1"),), (budget("gone", 0, 0),)
    )
    result = plan_group(g, snapshot, settings=Settings(), now=T0)
    assert [(b.check, b.subject) for b in result.blockers] == [
        ("pdb-selects-no-pods", "PodDisruptionBudget default/gone")
    ]


def test_surge_waves_need_only_one_waves_headroom() -> None:
    g = replace(group(*(instance(f"i-n{i}") for i in range(4))), max_size=5)
    nodes = tuple(node(f"n{i}", provider_id=f"aws:///us-east-1a/i-n{i}") for i in range(4))
    tight = Settings(may_raise_max_size=False)
    assert [b.check for b in plan_group(g, Snapshot(nodes), settings=tight, now=T0).blockers] == ["max-size"]
    waved = plan_group(g, Snapshot(nodes), settings=tight, now=T0, surge=1)
    assert waved.blockers == ()
    assert waved.surge == 1
    assert len(waved.waves) == 4


def test_batch_pods_are_not_audited() -> None:
    job = pod("j", "n1", app="report", kind="Job", readiness_probe=False, pre_stop=False)
    assert findings([job]) == set()


def test_nothing_to_replace_means_nothing_blocks() -> None:
    g = group(instance("i-n1", launch=V2))
    snapshot = Snapshot(
        (node("n1", provider_id="aws:///us-east-1a/i-n1"),), (pod("a", "n1"),), (budget("gone", 0, 0),)
    )
    assert plan_group(g, snapshot, settings=Settings(), now=T0).blockers == ()


def test_the_budgets_selecting_a_pod_are_those_every_selector_check_finds_in_order() -> None:
    """Budgets filed under one of their matchLabels are found as if every budget's selector were
    checked: selectors with several labels, with expressions only, empty (all of the namespace) and
    nil (nothing), in another namespace."""
    expression = {"key": "tier", "operator": "In", "values": ["front"]}
    budgets = [
        Budget("default", "web", {"matchLabels": {"app": "web"}}),
        Budget("default", "web-front", {"matchLabels": {"app": "web", "tier": "front"}}),
        Budget("default", "front", {"matchExpressions": [expression]}),
        Budget("default", "everything", {}),
        Budget("default", "nothing", None),
        Budget("other", "web", {"matchLabels": {"app": "web"}}),
        Budget("default", "db", {"matchLabels": {"app": "db"}, "matchExpressions": [expression]}),
    ]
    selecting = Selecting(budgets)
    label_sets = [
        {"app": "web"},
        {"app": "web", "tier": "front"},
        {"tier": "front", "app": "db"},
        {"app": "db"},
        {},
    ]
    for namespace in ("default", "other"):
        for labels in label_sets:
            expected = tuple(
                b.key for b in budgets if b.namespace == namespace and selects(b.selector, labels)
            )
            assert selecting(namespace, labels) == expected, (namespace, labels)
    assert selecting("default", {"app": "web", "tier": "front"}) == (
        "default/web",
        "default/web-front",
        "default/front",
        "default/everything",
    )
