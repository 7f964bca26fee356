"""The list-and-watch cache against the sandbox over HTTP: it holds what the API server holds (pods by
node), a wait wakes for the changes that concern it and sleeps through the others, a change to a field
nodeswap does not read wakes no one, and after a cut watch whose version has expired (410) it lists
again and catches up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from nodeswap.cache import Cache, Concern
from nodeswap.kube import Kube
from tests.sandbox_client import SandboxClient

ONE_SECOND = 1.0


@pytest.fixture
def cache(world: SandboxClient, tmp_path: Path) -> Iterator[Cache]:
    with Cache(Kube(kubeconfig=str(world.kubeconfig(tmp_path)))) as cached:
        yield cached


def eventually(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the cache did not catch up"
        time.sleep(0.05)


def timed_wait(cache: Cache, since: int, concern: Concern, seconds: float) -> float:
    started = time.monotonic()
    cache.wait(since, concern, seconds)
    return time.monotonic() - started


def test_holds_the_pods_of_each_node_as_the_api_server_lists_them(world: SandboxClient, cache: Cache) -> None:
    core = client.CoreV1Api(world.kube())
    for node in core.list_node().items:
        name = node.metadata.name
        listed = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items
        assert {p.metadata.uid for p in listed} == {p.uid for p in cache.pods_on(name)}
    assert {n.metadata.name for n in core.list_node().items} == {n.name for n in cache.nodes()}


def test_a_wait_wakes_only_for_what_concerns_it(world: SandboxClient, cache: Cache) -> None:
    core = client.CoreV1Api(world.kube())
    pods = [p for p in core.list_namespaced_pod("default").items if p.spec.node_name]
    here = pods[0]
    there = next(p for p in pods if p.spec.node_name != here.spec.node_name)
    concern = Concern(pods_on=frozenset({here.spec.node_name}))

    mark = cache.mark()
    core.patch_namespaced_pod(there.metadata.name, "default", {"metadata": {"labels": {"elsewhere": "1"}}})
    eventually(lambda: any(p.labels.get("elsewhere") for p in cache.pods_on(there.spec.node_name)))
    assert timed_wait(cache, mark, concern, ONE_SECOND) >= ONE_SECOND * 0.9  # slept through it

    core.patch_namespaced_pod(here.metadata.name, "default", {"metadata": {"labels": {"here": "1"}}})
    assert timed_wait(cache, mark, concern, 30) < 10  # woken by it


def test_a_change_to_what_nodeswap_does_not_read_wakes_no_one(world: SandboxClient, cache: Cache) -> None:
    core = client.CoreV1Api(world.kube())
    pod = next(p for p in core.list_namespaced_pod("default").items if p.spec.node_name)
    concern = Concern(pods_on=frozenset({pod.spec.node_name}))
    mark = cache.mark()
    body = {"metadata": {"annotations": {"example.com/build": "42"}}}
    written = core.patch_namespaced_pod(pod.metadata.name, "default", body)
    assert written.metadata.annotations["example.com/build"] == "42"
    assert timed_wait(cache, mark, concern, ONE_SECOND) >= ONE_SECOND * 0.9


def test_lists_again_when_a_cut_watch_cannot_resume(world: SandboxClient, cache: Cache) -> None:
    core = client.CoreV1Api(world.kube())
    node = cache.nodes()[0].name
    mark = cache.mark()
    # Every watch is cut, and the next attempt to watch again is refused: the cache lists again.
    world.admin(
        "PUT", "faults", [{"api": "kube", "operations": ["watch"], "error": "unavailable", "limit": 1}]
    )
    world.admin("POST", "kube/cut-watches")
    assert timed_wait(cache, mark, Concern(), 30) < 10  # the relist woke every wait
    for value in ("a", "b", "c"):
        core.patch_node(node, {"metadata": {"labels": {"example.com/step": value}}})
    eventually(lambda: (cache.node(node) or cache.nodes()[0]).labels.get("example.com/step") == "c")
    assert [r for r in world.sandbox.report()["requests"] if r["fault"]], "no watch was refused"


def test_a_pods_budgets_follow_its_labels_and_the_budgets_selectors(
    world: SandboxClient, cache: Cache
) -> None:
    core, policy = client.CoreV1Api(world.kube()), client.PolicyV1Api(world.kube())
    web = next(p for p in core.list_namespaced_pod("default").items if p.metadata.labels.get("app") == "web")
    name = web.metadata.name

    def budgets() -> list[str]:
        cached = next(p for p in cache.pods_on(web.spec.node_name) if p.name == name)
        return [b.key for b in cache.budgets_of(cached)]

    assert budgets() == ["default/web"]
    canary = {"maxUnavailable": 1, "selector": {"matchLabels": {"tier": "canary"}}}
    policy.create_namespaced_pod_disruption_budget(
        "default", {"metadata": {"name": "canary"}, "spec": canary}
    )
    core.patch_namespaced_pod(name, "default", {"metadata": {"labels": {"tier": "canary"}}})
    eventually(lambda: sorted(budgets()) == ["default/canary", "default/web"])
    policy.patch_namespaced_pod_disruption_budget(
        "canary", "default", {"spec": {"selector": {"matchLabels": {"tier": "stable"}}}}
    )
    eventually(lambda: budgets() == ["default/web"])
