"""The pure planning core: which instances are outdated, what drain does with each pod, and which
causes refuse a rollout before it starts. No I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from nodeswap.audit import selects
from nodeswap.model import Budget, Group, Instance, LaunchSpec, Node, Owner, Pod, Snapshot
from nodeswap.plan import Action, Settings, decide, outdated, plan_group

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
V1 = LaunchSpec("lt-1", "workers", "1")
V2 = LaunchSpec("lt-1", "workers", "2")


def instance(name: str, launch: LaunchSpec = V1, state: str = "InService", age_days: float = 1) -> Instance:
    return Instance(name, "us-east-1a", state, True, launch, NOW - timedelta(days=age_days))


def group(
    *instances: Instance, launch: LaunchSpec = V2, desired: int | None = None, max_size: int = 6
) -> Group:
    count = desired if desired is not None else len(instances)
    return Group("workers", 1, max_size, count, launch, instances)


def node(instance_id: str, ready: bool = True) -> Node:
    return Node(f"node-{instance_id}", f"aws:///us-east-1a/{instance_id}", ready)


def pod(name: str, on: str, owner: str | None = "ReplicaSet", **fields: object) -> Pod:
    owned = Owner(owner, "x") if owner else None
    return replace(Pod("default", name, f"uid-{name}", f"node-{on}", {"app": "web"}, owner=owned), **fields)


def test_instances_from_another_template_version_are_outdated() -> None:
    reasons = outdated(group(instance("i-old", V1), instance("i-new", V2)), Settings(), NOW)
    assert set(reasons) == {"i-old"}
    assert "version 1" in reasons["i-old"]
    assert "version 2" in reasons["i-old"]


def test_launch_configuration_instances_are_outdated_against_a_template() -> None:
    old = instance("i-lc", LaunchSpec(configuration="workers-lc"))
    assert "launch configuration workers-lc" in outdated(group(old), Settings(), NOW)["i-lc"]


def test_all_and_older_than() -> None:
    g = group(instance("i-a", V2, age_days=10), instance("i-b", V2, age_days=2))
    assert set(outdated(g, Settings(replace_all=True), NOW)) == {"i-a", "i-b"}
    assert set(outdated(g, Settings(older_than=timedelta(days=7)), NOW)) == {"i-a"}


def test_instances_leaving_the_group_are_not_replaced_again() -> None:
    assert outdated(group(instance("i-x", V1, state="Terminating:Wait")), Settings(), NOW) == {}


@pytest.mark.parametrize(
    ("pod_fields", "settings", "action", "says"),
    [
        ({}, Settings(), Action.EVICT, ""),
        ({"owner": Owner("DaemonSet", "agent")}, Settings(), Action.SKIP, "DaemonSet-managed"),
        (
            {"owner": Owner("DaemonSet", "agent")},
            Settings(ignore_daemonsets=False),
            Action.BLOCK,
            "--ignore-daemonsets",
        ),
        ({"mirror": True, "owner": None}, Settings(), Action.SKIP, "mirror"),
        ({"owner": None}, Settings(), Action.BLOCK, "--force"),
        ({"owner": None}, Settings(force=True), Action.EVICT, ""),
        ({"empty_dir": True}, Settings(), Action.BLOCK, "--delete-emptydir-data"),
        ({"empty_dir": True}, Settings(delete_emptydir_data=True), Action.EVICT, ""),
        ({"phase": "Succeeded"}, Settings(), Action.EVICT, "finished"),
        (
            {"annotations": {"karpenter.sh/do-not-disrupt": "true"}},
            Settings(),
            Action.BLOCK,
            "do-not-disrupt",
        ),
    ],
)
def test_pod_decisions(pod_fields: dict[str, object], settings: Settings, action: Action, says: str) -> None:
    decision = decide(replace(pod("p", "i-old"), **pod_fields), settings)
    assert decision.action is action
    assert says in decision.reason + decision.remedy
    assert (decision.action is Action.BLOCK) == bool(decision.remedy)  # every blocked pod says how to unblock


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {"app": "web"}, False),
        ({}, {"app": "web"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
        ({"matchLabels": {"app": "db"}}, {"app": "web"}, False),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]},
            {"app": "web"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
            {"app": "web"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"app": "web"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"app": "web"}, True),
    ],
)
def test_label_selectors(selector: dict[str, object] | None, labels: dict[str, str], expected: bool) -> None:
    assert selects(selector, labels) is expected


def budget(name: str, expected: int, desired: int, selector: dict[str, object] | None = None) -> Budget:
    return Budget(
        "default",
        name,
        selector or {"matchLabels": {"app": "web"}},
        expected_pods=expected,
        desired_healthy=desired,
        current_healthy=expected,
        disruptions_allowed=max(0, expected - desired),
    )


def plan(
    *,
    pods: list[Pod] | None = None,
    budgets: list[Budget] | None = None,
    settings: Settings | None = None,
    nodes: list[Node] | None = None,
    g: Group | None = None,
) -> list[tuple[str, str]]:
    g = g or group(instance("i-old", V1), instance("i-new", V2))
    snapshot = Snapshot(
        tuple(nodes if nodes is not None else [node("i-old"), node("i-new")]),
        tuple(pods or []),
        tuple(budgets or []),
    )
    result = plan_group(g, snapshot, settings=settings or Settings(), now=NOW)
    return [(b.subject, b.remedy) for b in result.blockers]


def test_a_healthy_plan_has_no_blockers() -> None:
    result = plan_group(
        group(instance("i-old", V1), instance("i-new", V2)),
        Snapshot(
            (node("i-old"), node("i-new")), (pod("a", "i-old"), pod("b", "i-new")), (budget("web", 3, 2),)
        ),
        settings=Settings(),
        now=NOW,
    )
    assert result.blockers == ()
    assert [p.name for p in result.evictions] == ["a"]  # only pods on outdated nodes move
    assert result.surge == 1
    assert result.max_size_needed == 3


def test_budget_that_cannot_allow_a_disruption_at_full_strength_blocks() -> None:
    assert plan(pods=[pod("a", "i-old")], budgets=[budget("web", 3, 3)]) == [
        ("PodDisruptionBudget default/web", "scale the workload up or relax minAvailable/maxUnavailable")
    ]


def test_a_budget_momentarily_at_zero_does_not_block() -> None:
    short = replace(budget("web", 3, 2), current_healthy=2, disruptions_allowed=0)
    assert plan(pods=[pod("a", "i-old")], budgets=[short]) == []


def test_pod_selected_by_two_budgets_blocks() -> None:
    blockers = plan(pods=[pod("a", "i-old")], budgets=[budget("web", 3, 2), budget("web-too", 3, 1)])
    assert blockers == [("pod default/a", "make the PDBs' selectors disjoint")]


def test_blocked_pods_name_the_flag() -> None:
    blockers = plan(pods=[pod("bare", "i-old", owner=None), pod("tmp", "i-old", empty_dir=True)])
    assert blockers == [
        ("pod default/bare", "run it under a Deployment or StatefulSet, or use --force to delete it anyway"),
        ("pod default/tmp", "use --delete-emptydir-data if that data can be lost"),
    ]


def test_max_size_headroom() -> None:
    tight = group(instance("i-old", V1), instance("i-new", V2), max_size=2)
    assert plan(g=tight) == []  # nodeswap may raise MaxSize by default
    assert plan(g=tight, settings=Settings(may_raise_max_size=False)) == [
        ("group workers", "raise MaxSize, or let nodeswap raise it during the rollout")
    ]


def test_not_ready_nodes_and_busy_groups_block() -> None:
    assert plan(nodes=[node("i-old"), node("i-new", ready=False)]) == [
        ("node node-i-new (i-new)", "repair or replace it first")
    ]
    busy = replace(group(instance("i-old", V1)), busy=True)
    assert plan(g=busy, nodes=[node("i-old")]) == [("group workers", "wait for it to finish and re-run")]


def test_an_outdated_instance_without_a_node_blocks() -> None:
    assert plan(nodes=[node("i-new")]) == [
        ("instance i-old", "check --kubeconfig/--context point at the cluster this group's instances join")
    ]


def test_nodes_are_matched_by_provider_id_not_name() -> None:
    renamed = Node("custom-hostname", "aws:///us-east-1a/i-old", True)
    result = plan_group(
        group(instance("i-old", V1)),
        Snapshot((renamed,), (replace(pod("a", "x"), node="custom-hostname"),)),
        settings=Settings(),
        now=NOW,
    )
    assert result.nodes == {"i-old": renamed}
    assert [p.name for p in result.evictions] == ["a"]


def test_a_started_rollout_never_replaces_what_it_launched() -> None:
    started = Settings(replace_all=True, launched_before=NOW - timedelta(days=1))
    g = group(instance("i-old", V2, age_days=3), instance("i-surged", V2, age_days=0.001))
    assert set(outdated(g, started, NOW)) == {"i-old"}


Namespaced = TypeVar("Namespaced", Pod, Budget)


def in_namespace(namespace: str, thing: Namespaced) -> Namespaced:
    return replace(thing, namespace=namespace)


def idle_budgets(pods: list[Pod], budgets: list[Budget], g: Group | None = None) -> tuple[set[str], set[str]]:
    """The budgets that select no pods, as (blocking, warned about): their subjects."""
    result = plan_group(
        g or group(instance("i-old", V1), instance("i-new", V2)),
        Snapshot((node("i-old"), node("i-new")), tuple(pods), tuple(budgets)),
        settings=Settings(),
        now=NOW,
    )
    assert all(b.scope == "workload" for b in result.blockers if b.check == "pdb-selects-no-pods")
    return (
        {b.subject for b in result.blockers if b.check == "pdb-selects-no-pods"},
        {w.subject for w in result.warnings if w.check == "pdb-selects-no-pods"},
    )


ORPHAN = budget("orphan", 0, 0, {"matchLabels": {"app": "gone"}})


def test_a_budget_selecting_no_pods_where_pods_move_blocks() -> None:
    """In the namespace of a pod this rollout moves, it was likely meant to protect that pod."""
    assert idle_budgets([pod("a", "i-old")], [budget("web", 3, 2), ORPHAN]) == (
        {"PodDisruptionBudget default/orphan"},
        set(),
    )


def test_a_budget_selecting_no_pods_elsewhere_is_only_a_warning() -> None:
    moving = pod("a", "i-old")
    staying = in_namespace("billing", pod("b", "i-new"))  # pods there, but none of them moves
    elsewhere = [in_namespace("billing", ORPHAN), in_namespace("empty", replace(ORPHAN, name="stale"))]
    assert idle_budgets([moving, staying], elsewhere) == (
        set(),
        {"PodDisruptionBudget billing/orphan", "PodDisruptionBudget empty/stale"},
    )
    result = plan_group(
        group(instance("i-old", V1)),
        Snapshot((node("i-old"),), (moving,), (in_namespace("billing", ORPHAN),)),
        settings=Settings(),
        now=NOW,
    )
    assert result.blockers == ()
    (warning,) = [w for w in result.warnings if w.check == "pdb-selects-no-pods"]
    assert "selects no pods" in warning.cause
    assert "does not concern this group's pods" in warning.cause
    assert warning.remedy == "fix its selector to match the workload's pod labels, or delete it"


def test_pods_that_stay_do_not_make_a_budget_selecting_nothing_block() -> None:
    """Only moving pods count: a skipped DaemonSet pod or a finished pod in the namespace does not."""
    agent = pod("agent", "i-old", owner="DaemonSet")
    done = pod("done", "i-old", phase="Succeeded")
    assert idle_budgets([agent, done], [ORPHAN]) == (set(), {"PodDisruptionBudget default/orphan"})


def test_nothing_to_replace_means_no_word_on_budgets_selecting_nothing() -> None:
    current = group(instance("i-new", V2))
    assert idle_budgets([pod("b", "i-new")], [ORPHAN], g=current) == (set(), set())
