"""The drain's reading of the cache, with the cache and the API server faked at nodeswap's adapter
boundary: a node the cache shows empty only because it has not seen a pod bound there yet is listed
afresh before its instance goes; a node emptied by the drain's own evictions is not, since pod events
arrive in order and the cache has then seen every pod bound there before the fence. A pass evicts the
pods of the budgets with the most rounds ahead first (a budget's rounds counted at the fewest pods it
let go at once), and at most EVICTIONS_PER_PASS before it looks again. A budget is not asked for a
disruption while its record does not show the drain's last eviction yet, and a pod it refused is asked
again once its record changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from nodeswap import steps
from nodeswap.cache import Concern
from nodeswap.kube import Eviction, EvictionResult
from nodeswap.model import Budget, LifecycleHook, Owner, Pod
from nodeswap.plan import Action, Settings, decide
from nodeswap.run import RolloutSettings, Run, Summary
from nodeswap.steps import Drain, Hooks


def pod(name: str, node: str, app: str = "web") -> Pod:
    return Pod("default", name, f"uid-{name}", node, labels={"app": app}, owner=Owner("ReplicaSet", app))


class Cluster:
    """The API server's pods and the cache's view of them, which lacks the pods it has not seen yet."""

    def __init__(self, served: list[Pod], unseen: set[str], budgets: dict[str, Budget] | None = None) -> None:
        self.served = {p.uid: p for p in served}
        self.unseen = unseen
        self.budgets = budgets or {}  # app label -> its budget
        self.fresh_lists: list[str] = []
        self.evicted: list[str] = []
        self.passes: list[int] = []  # at each pass's start, the evictions made before it
        self.waits: list[int] = []  # at each wait, the evictions made before it

    # the cache
    def mark(self) -> int:
        self.passes.append(len(self.evicted))
        return 0

    def pods_on(self, node: str) -> list[Pod]:
        return [p for p in self.served.values() if p.node == node and p.uid not in self.unseen]

    def budgets_of(self, pod: Pod) -> list[Budget]:
        budget = self.budgets.get(pod.labels["app"])
        return [budget] if budget else []

    def wait(self, *_args: Any) -> None:
        self.waits.append(len(self.evicted))

    # the API server
    def list_pods_on(self, node: str) -> list[Pod]:
        self.fresh_lists.append(node)
        return [p for p in self.served.values() if p.node == node]

    def evict(self, evicted: Pod, _grace: int | None) -> EvictionResult:
        self.evicted.append(evicted.name)
        del self.served[evicted.uid]  # gone at once, and the cache sees it
        return EvictionResult(Eviction.EVICTED)


class Lingering(Cluster):
    """An evicted pod stays, terminating, through the next pass, and is gone by the one after."""

    def __init__(self, served: list[Pod]) -> None:
        super().__init__(served, unseen=set())
        self.terminating: dict[str, int] = {}  # uid -> the passes it has been terminating

    def mark(self) -> int:
        for uid, passes in list(self.terminating.items()):
            if passes >= 1:
                del self.served[uid], self.terminating[uid]
            else:
                self.terminating[uid] = passes + 1
        return super().mark()

    def evict(self, evicted: Pod, _grace: int | None) -> EvictionResult:
        self.evicted.append(evicted.name)
        self.served[evicted.uid] = dataclasses.replace(evicted, deleting=True)
        self.terminating[evicted.uid] = 0
        return EvictionResult(Eviction.EVICTED)


class Holding:
    """Hooks that can hold any instance whose pods all terminate; records what was terminated how."""

    def __init__(self) -> None:
        self.terminations: list[tuple[str, str | None]] = []  # (instance, the node holding it)

    def terminated(self, instance: str, held_by: str | None = None) -> None:
        self.terminations.append((instance, held_by))

    def can_hold(self, pods: list[Pod], evicted: set[str]) -> bool:
        return all(p.deleting or p.uid in evicted for p in pods)

    def poll(self) -> None:
        pass

    def hurry(self) -> None:
        pass

    def concern(self) -> Concern:
        return Concern()


def drain(
    cluster: Cluster,
    nodes: dict[str, str],
    cap: int | None = None,
    hooks: Any = None,
    said: list[str] | None = None,
) -> list[str]:
    """Drain ``nodes`` (instance -> node name), ``cap`` at a time (all); the instances terminated, in
    order. ``said``: where the drain's messages go."""
    terminated: list[str] = []
    said = [] if said is None else said
    run: Any = SimpleNamespace(
        settings=RolloutSettings(),
        decide=lambda pod: decide(pod, Settings()),
        summary=Summary("workers"),
        record=SimpleNamespace(retired=()),
        lock=SimpleNamespace(check=lambda: None),
        cluster=cluster,
        kube=SimpleNamespace(pods_on=cluster.list_pods_on, evict=cluster.evict),
        aws=SimpleNamespace(terminate=terminated.append),
        say=lambda _phase, message, **_data: said.append(message),
        update=lambda **_changes: None,
    )
    hooks = hooks or SimpleNamespace(
        terminated=lambda *_args: None,
        poll=lambda: None,
        hurry=lambda: None,
        can_hold=lambda *_args: False,
        concern=Concern,
    )
    Drain(run, hooks)(list(nodes), nodes, cap=cap or len(nodes))
    return terminated


def test_a_node_the_cache_shows_empty_is_listed_afresh_and_its_unseen_pod_evicted_first() -> None:
    late = pod("late", "node-b")  # bound a moment before the fence: not in the cache yet
    cluster = Cluster([late], unseen={late.uid})

    assert drain(cluster, {"i-b": "node-b"}) == ["i-b"]
    assert cluster.evicted == ["late"]
    assert cluster.fresh_lists == ["node-b"]


def test_a_node_emptied_by_the_drains_own_evictions_goes_without_a_fresh_list() -> None:
    cluster = Cluster([pod("web-a", "node-a"), pod("web-b", "node-a")], unseen=set())

    assert drain(cluster, {"i-a": "node-a"}) == ["i-a"]
    assert sorted(cluster.evicted) == ["web-a", "web-b"]
    assert cluster.fresh_lists == []


def test_a_pass_evicts_first_the_pods_of_the_budgets_with_the_most_rounds_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The evictions of a pass made one after the other, in the order the drain hands them over.
    def in_order(action: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return [action(item) for item in items]

    monkeypatch.setattr(steps, "concurrently", in_order)

    # web: 6 pods to move 2 at a time (3 rounds); api: 2 pods, 2 at a time (1 round); loose: no budget.
    # The node listed first holds the pods of the shortest queues.
    pods = [pod(f"loose-{i}", "node-a", "loose") for i in range(3)]
    pods += [pod(f"api-{i}", "node-a", "api") for i in range(2)]
    pods += [pod(f"web-{i}", "node-b") for i in range(6)]
    cluster = Cluster(pods, unseen=set(), budgets={"web": budget("web", 6, 2), "api": budget("api", 2, 2)})

    drain(cluster, {"i-a": "node-a", "i-b": "node-b"})

    assert cluster.evicted[:5] == ["web-0", "web-1", "api-0", "api-1", "loose-0"]


def test_a_pass_evicts_at_most_its_share_then_looks_again_at_once() -> None:
    many = steps.EVICTIONS_PER_PASS + 8
    cluster = Cluster([pod(f"batch-{i}", "node-a", "batch") for i in range(many)], unseen=set())

    assert drain(cluster, {"i-a": "node-a"}) == ["i-a"]
    assert cluster.passes[:3] == [0, steps.EVICTIONS_PER_PASS, many]
    assert steps.EVICTIONS_PER_PASS not in cluster.waits  # the second pass came without a wait


def budget(app: str, expected: int, allowed: int, desired: int | None = None) -> Budget:
    """A budget of ``expected`` healthy pods; ``desired`` of them needed (all but ``allowed``)."""
    return Budget(
        "default",
        app,
        None,
        expected_pods=expected,
        current_healthy=expected,
        desired_healthy=expected - allowed if desired is None else desired,
        disruptions_allowed=allowed,
    )


class Replacing(Cluster):
    """Each eviction shows at once in its budget's record as the disruption controller counts a
    minAvailable budget's pods: the evicted pod's replacement beside it while it terminates (and,
    here, Ready at once: the budget allows as much as before)."""

    def evict(self, evicted: Pod, grace: int | None) -> EvictionResult:
        app = evicted.labels["app"]
        if app in self.budgets:
            was = self.budgets[app]
            self.budgets[app] = dataclasses.replace(was, expected_pods=was.expected_pods + 1)
        return super().evict(evicted, grace)


def test_a_budget_counting_an_evicted_pods_replacement_keeps_its_place_in_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(steps, "EVICTIONS_PER_PASS", 1)
    # web: 7 pods, 2 at a time (4 rounds); api: 4 pods, 2 at a time (2 rounds), on the node listed first.
    # Once a web pod is evicted, its budget counts 8 pods for a moment (3 at a time, so 2 rounds for the
    # 6 left, as many as api's): it is still 3 rounds.
    pods = [pod(f"api-{i}", "node-a", "api") for i in range(4)]
    pods += [pod(f"web-{i}", "node-b") for i in range(7)]
    budgets = {"web": budget("web", 7, 2, desired=5), "api": budget("api", 4, 2)}
    cluster = Replacing(pods, unseen=set(), budgets=budgets)

    drain(cluster, {"i-a": "node-a", "i-b": "node-b"})

    assert cluster.evicted[:2] == ["web-0", "web-1"]


class Behind(Cluster):
    """One budget, "web", whose record the cache shows a pass after the API server wrote it (at each
    eviction, and when an evicted pod's replacement is Ready, two passes after the eviction); the API
    server refuses an eviction its budget does not allow."""

    def __init__(self, served: list[Pod], cached: Budget, allowed: int) -> None:
        super().__init__(served, unseen=set(), budgets={"web": cached})
        self.allowed = allowed  # as the API server counts it
        self.written: list[tuple[int, Budget]] = []  # (the pass the cache shows it at, the record)
        self.ready_at: list[int] = []  # the passes at which replacements are Ready
        self.refused: list[tuple[str, int]] = []  # (pod, pass)

    def _write(self, allowed: int) -> None:
        self.allowed = allowed
        record = dataclasses.replace(self.budgets["web"], disruptions_allowed=allowed)
        self.written.append((len(self.passes) + 1, record))

    def mark(self) -> int:
        now = len(self.passes)
        for _ in [at for at in self.ready_at if at == now]:
            self._write(self.allowed + 1)
        shown = [record for at, record in self.written if at <= now]
        if shown:
            self.budgets["web"] = shown[-1]
            self.written = [(at, record) for at, record in self.written if at > now]
        return super().mark()

    def evict(self, evicted: Pod, grace: int | None) -> EvictionResult:
        if self.allowed <= 0:
            self.refused.append((evicted.name, len(self.passes)))
            return EvictionResult(Eviction.BLOCKED, "needs 1 healthy pod", "default/web")
        self._write(self.allowed - 1)
        self.ready_at.append(len(self.passes) + 2)
        return super().evict(evicted, grace)


def test_a_budget_is_not_asked_for_another_eviction_before_its_record_shows_the_last() -> None:
    cluster = Behind([pod("web-0", "node-a"), pod("web-1", "node-a")], budget("web", 2, 1), allowed=1)
    said: list[str] = []

    assert drain(cluster, {"i-a": "node-a"}, said=said) == ["i-a"]
    assert cluster.evicted == ["web-0", "web-1"]
    assert cluster.refused == []
    waits = [message for message in said if message.startswith("waiting on PDB")]
    assert waits == [
        "waiting on PDB default/web: The disruption budget web needs 1 healthy pods and has 2 currently, "
        "1 of them being evicted"
    ]


def test_a_pod_its_budget_refused_is_asked_again_once_the_budgets_record_changes_not_on_a_timer() -> None:
    # The cache shows the budget allowing one, but another hand's eviction took it a moment ago: the
    # API server allows none until that pod's replacement is Ready (the cache shows it two passes on).
    cluster = Behind([pod("web-0", "node-a")], budget("web", 2, 1), allowed=0)
    cluster.ready_at.append(1)

    assert drain(cluster, {"i-a": "node-a"}) == ["i-a"]
    assert cluster.refused == [("web-0", 1)]
    assert cluster.evicted == ["web-0"]
    assert len(cluster.passes) <= 4  # not after RETRY_SECONDS of passes


def test_a_pod_that_is_not_ready_refused_by_its_budget_is_asked_again_after_a_pause_not_at_every_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pod that is not Ready is asked about whatever its budget allows (the API server decides): a
    # refusal holds it RETRY_SECONDS, however fast the passes come.
    monkeypatch.setattr(steps, "RETRY_SECONDS", 0.2)
    failing = dataclasses.replace(pod("web-0", "node-a"), ready=False)
    cluster = Behind([failing], budget("web", 2, 0), allowed=0)
    cluster.ready_at.append(3)

    assert drain(cluster, {"i-a": "node-a"}) == ["i-a"]
    assert cluster.refused == [("web-0", 1)]
    assert cluster.evicted == ["web-0"]


def hooks_of(*hooks: tuple[str, int], grace_period: int | None = None) -> Hooks:
    """Hooks over a group with termination hooks (name, heartbeat timeout)."""
    terminating = "autoscaling:EC2_INSTANCE_TERMINATING"
    described = tuple(LifecycleHook(name, terminating, timeout, "CONTINUE") for name, timeout in hooks)
    run: Any = SimpleNamespace(
        name="workers",
        settings=RolloutSettings(grace_period=grace_period),
        aws=SimpleNamespace(hooks=lambda _group: described),
    )
    return Hooks(run)


def test_an_instance_is_held_by_nodeswaps_hook_only_while_its_last_pods_terminate_within_its_timeout() -> (
    None
):
    terminating = dataclasses.replace(pod("web-a", "node-a"), deleting=True, grace_seconds=30)
    evicted = pod("web-b", "node-a")  # evicted a moment ago: the cache does not show it terminating yet
    serving = pod("web-c", "node-a")
    slow = dataclasses.replace(terminating, grace_seconds=280)  # 280 s + 30 s margin outlast a 300 s hook

    ours = hooks_of(("nodeswap-drain", 300), ("log-shipper", 60))
    assert ours.can_hold([terminating, evicted], {evicted.uid})
    assert not ours.can_hold([terminating, serving], {evicted.uid})
    assert not ours.can_hold([slow], set())
    assert not ours.can_hold([], set())
    assert not hooks_of(("log-shipper", 3600)).can_hold([terminating], set())  # another tool's hook
    assert hooks_of(("nodeswap-drain", 300), grace_period=10).can_hold([slow], set())  # --grace-period 10


def test_a_pods_decision_is_made_again_once_its_record_changes() -> None:
    nothing: Any = None  # the decision reads the settings only
    run = Run(nothing, nothing, RolloutSettings(), nothing, nothing, nothing, nothing, nothing, Summary("w"))
    serving = pod("web-a", "node-a")
    assert run.decide(serving).action is Action.EVICT
    assert run.decide(serving) is run.decide(serving)  # kept
    protected = dataclasses.replace(serving, annotations={"karpenter.sh/do-not-disrupt": "true"})
    assert run.decide(protected).action is Action.BLOCK


def test_a_node_is_terminated_while_its_last_pods_terminate_only_when_no_node_waits_behind_it() -> None:
    """With --max-unavailable 1, node-a counts until its pod is gone, so node-b waits and is not
    drained beside it; node-b, the last, goes while its pod terminates, held by the hook."""
    cluster = Lingering([pod("web-a", "node-a"), pod("web-b", "node-b")])
    hooks = Holding()

    assert drain(cluster, {"i-a": "node-a", "i-b": "node-b"}, cap=1, hooks=hooks) == ["i-a", "i-b"]
    assert hooks.terminations == [("i-a", None), ("i-b", "node-b")]
    assert cluster.evicted == ["web-a", "web-b"]
