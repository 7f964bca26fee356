"""The sandbox's Kubernetes API through the official Python client: eviction answers, PDB status,
watches (resume, bookmarks, 410), optimistic concurrency, Leases, selectors, pagination, graceful
deletion and garbage collection."""

from __future__ import annotations

import itertools
import json
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from nodeswap.sandbox.kube import apiserver, store
from nodeswap.sandbox.kube.resources import BY_KEY
from tests.sandbox_client import QUICK_KUBERNETES, QUICK_TIMING, SandboxClient

WORKLOADS = list(yaml.safe_load_all((Path(__file__).parent / "manifests" / "workloads.yaml").read_text()))


@pytest.fixture
def cluster(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    """The default group with the manifests' workloads running and Ready at start."""
    return start_sandbox(timing=QUICK_TIMING, kubernetes={**QUICK_KUBERNETES, "workloads": WORKLOADS})


@pytest.fixture
def core(cluster: SandboxClient) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.kube())


@pytest.fixture
def policy(cluster: SandboxClient) -> client.PolicyV1Api:
    return client.PolicyV1Api(cluster.kube())


def evict(core: client.CoreV1Api, name: str) -> Any:
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace="default"))
    return core.create_namespaced_pod_eviction(name, "default", body)


def web_pods(core: client.CoreV1Api) -> list[client.V1Pod]:
    return [
        p
        for p in core.list_namespaced_pod("default", label_selector="app=web").items
        if not p.metadata.deletion_timestamp
    ]


def wait_for(condition: Callable[[], bool], cluster: SandboxClient, what: str, seconds: float = 20) -> None:
    """Watch the sandbox's store until ``condition`` holds (checked on every change, never by sleeping)."""
    changed = threading.Event()
    cluster.sandbox.store.listeners.append(lambda _change: changed.set())
    deadline = threading.Event()
    timer = threading.Timer(seconds, deadline.set)
    timer.start()
    try:
        while not condition():
            if deadline.is_set():
                raise AssertionError(f"timed out waiting for {what}")
            changed.wait(0.5)
            changed.clear()
    finally:
        timer.cancel()


def test_eviction_is_allowed_while_the_budget_allows_it(
    core: client.CoreV1Api, policy: client.PolicyV1Api
) -> None:
    assert policy.read_namespaced_pod_disruption_budget("web", "default").status.disruptions_allowed == 1
    victim = web_pods(core)[0].metadata.name
    evict(core, victim)
    pod = core.read_namespaced_pod(victim, "default")
    assert pod.metadata.deletion_timestamp is not None  # graceful: terminating, not gone
    status = policy.read_namespaced_pod_disruption_budget("web", "default").status
    assert status.disruptions_allowed == 0


def test_eviction_refused_by_the_budget_is_a_429_naming_it(
    cluster: SandboxClient, core: client.CoreV1Api, policy: client.PolicyV1Api
) -> None:
    first, second = (p.metadata.name for p in web_pods(core)[:2])
    evict(core, first)

    # The cause quotes the budget's status: once the disruption controller counts the evicted pod out.
    def counted_out() -> bool:
        status = policy.read_namespaced_pod_disruption_budget("web", "default").status
        return bool(status.current_healthy == 2)

    wait_for(counted_out, cluster, "the budget to count the evicted pod out")
    with pytest.raises(ApiException) as refused:
        evict(core, second)
    assert refused.value.status == 429
    body = yaml.safe_load(refused.value.body)
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
        }
    ]
    assert "Retry-After" not in (refused.value.headers or {})  # unlike API Priority and Fairness


def test_eviction_with_two_budgets_is_a_500(core: client.CoreV1Api, policy: client.PolicyV1Api) -> None:
    policy.create_namespaced_pod_disruption_budget(
        "default",
        client.V1PodDisruptionBudget(
            metadata=client.V1ObjectMeta(name="web-too"),
            spec=client.V1PodDisruptionBudgetSpec(
                max_unavailable=1, selector=client.V1LabelSelector(match_labels={"app": "web"})
            ),
        ),
    )
    with pytest.raises(ApiException) as failed:
        evict(core, web_pods(core)[0].metadata.name)
    assert failed.value.status == 500
    assert "more than one PodDisruptionBudget" in yaml.safe_load(failed.value.body)["message"]


def test_eviction_of_a_missing_pod_is_a_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        evict(core, "nope")
    assert missing.value.status == 404
    assert yaml.safe_load(missing.value.body)["message"] == 'pods "nope" not found'


def test_pods_without_a_budget_are_always_evicted(cluster: SandboxClient, core: client.CoreV1Api) -> None:
    agent = core.list_namespaced_pod("default", label_selector="app=agent").items[0]
    evict(core, agent.metadata.name)
    # No preStop and an app that exits on SIGTERM: gone at once, and the DaemonSet puts a new one there.
    wait_for(
        lambda: agent.metadata.uid not in {p.metadata.uid for p in core.list_namespaced_pod("default").items},
        cluster,
        "the evicted pod to be gone",
    )
    wait_for(
        lambda: bool(
            core.list_namespaced_pod(
                "default", label_selector="app=agent", field_selector=f"spec.nodeName={agent.spec.node_name}"
            ).items
        ),
        cluster,
        "the DaemonSet to run a new pod on the node",
    )


@pytest.mark.parametrize(("policy_name", "evicted"), [("AlwaysAllow", True), ("IfHealthyBudget", False)])
def test_unhealthy_pod_eviction_policy(
    cluster: SandboxClient,
    core: client.CoreV1Api,
    policy: client.PolicyV1Api,
    policy_name: str,
    evicted: bool,
) -> None:
    policy.patch_namespaced_pod_disruption_budget(
        "web", "default", {"spec": {"minAvailable": 3, "unhealthyPodEvictionPolicy": policy_name}}
    )
    victim = web_pods(core)[0].metadata.name
    # The pod stays Running but stops being Ready (its readiness probe failing): the budget is short.
    core.patch_namespaced_pod_status(
        victim, "default", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    )
    wait_for(
        lambda: policy.read_namespaced_pod_disruption_budget("web", "default").status.current_healthy == 2,
        cluster,
        "budget",
    )
    if evicted:
        evict(core, victim)
        assert core.read_namespaced_pod(victim, "default").metadata.deletion_timestamp is not None
    else:
        with pytest.raises(ApiException) as refused:
            evict(core, victim)
        assert refused.value.status == 429


def test_statefulset_pod_returns_with_its_name_and_a_new_uid(
    cluster: SandboxClient, core: client.CoreV1Api
) -> None:
    before = core.read_namespaced_pod("db-0", "default").metadata.uid
    evict(core, "db-0")

    def back() -> bool:
        pods = [p for p in core.list_namespaced_pod("default", field_selector="metadata.name=db-0").items]
        return (
            bool(pods)
            and pods[0].metadata.uid != before
            and any(c.type == "Ready" and c.status == "True" for c in pods[0].status.conditions or [])
        )

    wait_for(back, cluster, "db-0 to come back Ready")


def test_deleted_pod_terminates_gracefully_and_is_replaced(
    cluster: SandboxClient, core: client.CoreV1Api
) -> None:
    victim = web_pods(core)[0]
    core.delete_namespaced_pod(victim.metadata.name, "default")
    terminating = core.read_namespaced_pod(victim.metadata.name, "default")
    assert terminating.metadata.deletion_grace_period_seconds == 5
    wait_for(
        lambda: (
            not [
                p for p in core.list_namespaced_pod("default").items if p.metadata.uid == victim.metadata.uid
            ]
        ),
        cluster,
        "the pod to be gone after its preStop",
    )
    wait_for(
        lambda: len([p for p in web_pods(core) if p.status.phase == "Running"]) == 3, cluster, "a replacement"
    )


def test_deleting_a_deployment_collects_its_pods(cluster: SandboxClient, core: client.CoreV1Api) -> None:
    client.AppsV1Api(cluster.kube()).delete_namespaced_deployment("web", "default")
    wait_for(
        lambda: not core.list_namespaced_pod("default", label_selector="app=web").items, cluster, "pods gone"
    )
    assert not client.AppsV1Api(cluster.kube()).list_namespaced_replica_set("default").items


def test_stale_update_is_a_409(core: client.CoreV1Api) -> None:
    node = core.list_node().items[0]
    node.metadata.labels["a"] = "1"
    core.replace_node(node.metadata.name, node)
    node.metadata.labels["b"] = "2"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_node(node.metadata.name, node)
    assert stale.value.status == 409
    assert "the object has been modified" in yaml.safe_load(stale.value.body)["message"]


def test_lease_create_and_update_conflicts(cluster: SandboxClient) -> None:
    leases = client.CoordinationV1Api(cluster.kube())
    lease = client.V1Lease(
        metadata=client.V1ObjectMeta(name="nodeswap-workers"),
        spec=client.V1LeaseSpec(holder_identity="run-a", lease_duration_seconds=30),
    )
    created = leases.create_namespaced_lease("kube-system", lease)
    with pytest.raises(ApiException) as exists:
        leases.create_namespaced_lease("kube-system", lease)
    assert exists.value.status == 409
    assert yaml.safe_load(exists.value.body)["reason"] == "AlreadyExists"
    created.spec.holder_identity = "run-b"
    renewed = leases.replace_namespaced_lease("nodeswap-workers", "kube-system", created)
    assert renewed.metadata.resource_version != created.metadata.resource_version
    created.spec.holder_identity = "run-c"  # raced: based on the version before run-b's write
    with pytest.raises(ApiException) as raced:
        leases.replace_namespaced_lease("nodeswap-workers", "kube-system", created)
    assert raced.value.status == 409
    assert leases.read_namespaced_lease("nodeswap-workers", "kube-system").spec.holder_identity == "run-b"


def test_watch_resumes_from_a_resource_version(core: client.CoreV1Api) -> None:
    version = core.list_namespaced_config_map("default").metadata.resource_version
    for name in ("one", "two"):
        core.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
        )
    events = watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=version, timeout_seconds=2
    )
    seen = [(e["type"], e["object"].metadata.name) for e in events]
    assert seen == [("ADDED", "one"), ("ADDED", "two")]


def test_watch_from_a_compacted_version_is_410(start_sandbox: Callable[..., SandboxClient]) -> None:
    cluster = start_sandbox(timing=QUICK_TIMING, kubernetes={**QUICK_KUBERNETES, "watch_history": 10})
    core = client.CoreV1Api(cluster.kube())
    old = core.list_namespaced_config_map("default").metadata.resource_version
    for index in range(20):
        core.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{index}"))
        )
    with pytest.raises(ApiException) as expired:
        list(
            watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=2
            )
        )
    assert expired.value.status == 410


def test_watch_reports_objects_leaving_a_field_selection_as_deleted(core: client.CoreV1Api) -> None:
    node = core.list_node().items[0].metadata.name
    version = core.list_node().metadata.resource_version
    core.patch_node(node, {"spec": {"unschedulable": True}})
    events = watch.Watch().stream(
        core.list_node, field_selector="spec.unschedulable=false", resource_version=version, timeout_seconds=2
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("DELETED", node)]


def test_selectors_and_pagination(core: client.CoreV1Api) -> None:
    node = core.read_namespaced_pod("db-0", "default").spec.node_name
    on_node = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    assert on_node
    assert all(p.spec.node_name == node for p in on_node)
    assert {
        p.metadata.labels["app"]
        for p in core.list_namespaced_pod("default", label_selector="app in (db)").items
    } == {"db"}
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert bad.value.status == 400
    everything = core.list_namespaced_pod("default").items
    first = core.list_namespaced_pod("default", limit=3)
    assert len(first.items) == 3
    assert first.metadata.remaining_item_count == len(everything) - 3
    rest = core.list_namespaced_pod("default", _continue=first.metadata._continue)
    assert [p.metadata.name for p in first.items + rest.items] == sorted(p.metadata.name for p in everything)


def test_watch_sends_bookmarks_when_asked(cluster: SandboxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apiserver, "BOOKMARK_SECONDS", 0.2)
    core = client.CoreV1Api(cluster.kube())
    version = core.list_node().metadata.resource_version
    response = core.list_node(
        watch=True,
        allow_watch_bookmarks=True,
        resource_version=version,
        timeout_seconds=2,
        _preload_content=False,
    )
    events = [yaml.safe_load(line) for line in response.read().decode().splitlines() if line]
    assert events
    assert {event["type"] for event in events} == {"BOOKMARK"}
    assert events[0]["object"] == {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": version},
    }


def raw(cluster: SandboxClient, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request as plain HTTP, for what the official client cannot send."""
    response = urllib3.PoolManager().request(
        method,
        f"{cluster.sandbox.kube_endpoint}{path}",
        body=None if body is None else json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    return response.status, json.loads(response.data)


def test_dry_run_computes_writes_without_committing_them(
    core: client.CoreV1Api, policy: client.PolicyV1Api
) -> None:
    made = core.create_namespaced_config_map(
        "default",
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dry"), data={"a": "1"}),
        dry_run="All",
    )
    assert (made.metadata.name, made.data) == ("dry", {"a": "1"})
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("dry", "default")
    assert missing.value.status == 404

    victim = web_pods(core)[0].metadata.name
    deleted = core.delete_namespaced_pod(victim, "default", dry_run="All")
    assert deleted.metadata.deletion_timestamp is not None  # what the delete would have done
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=victim, namespace="default"))
    for _ in range(2):  # the budget allows one eviction; a dry run does not spend it
        core.create_namespaced_pod_eviction(victim, "default", body, dry_run="All")
    assert core.read_namespaced_pod(victim, "default").metadata.deletion_timestamp is None
    status = policy.read_namespaced_pod_disruption_budget("web", "default").status
    assert (status.disruptions_allowed, status.disrupted_pods) == (1, None)

    with pytest.raises(ApiException) as bogus:
        core.delete_namespaced_pod(victim, "default", dry_run="Some")
    assert bogus.value.status == 422
    message = json.loads(bogus.value.body)["message"]
    assert message.endswith('dryRun: Unsupported value: []string{"Some"}: supported values: "All"')


def test_eviction_must_name_the_pod_of_the_url(cluster: SandboxClient, core: client.CoreV1Api) -> None:
    victim = web_pods(core)[0].metadata.name
    path = f"/api/v1/namespaces/default/pods/{victim}/eviction"
    for metadata in ({}, {"name": "other"}):
        status, body = raw(
            cluster, "POST", path, {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": metadata}
        )
        assert (status, body["reason"]) == (400, "BadRequest")
        assert body["message"] == "name in URL does not match name in Eviction object"
    assert core.read_namespaced_pod(victim, "default").metadata.deletion_timestamp is None


@pytest.mark.parametrize("method", ["PUT", "PATCH", "GET", "DELETE"])
def test_eviction_is_post_only(cluster: SandboxClient, core: client.CoreV1Api, method: str) -> None:
    victim = web_pods(core)[0].metadata.name
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": victim}}
    status, body = raw(cluster, method, f"/api/v1/namespaces/default/pods/{victim}/eviction", eviction)
    assert (status, body["reason"]) == (405, "MethodNotAllowed")
    assert core.read_namespaced_pod(victim, "default").metadata.deletion_timestamp is None


@pytest.mark.parametrize(
    ("taints", "message"),
    [
        (
            [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "value": "x", "effect": "NoSchedule"}],
            "spec.taints[1]: Duplicate value",
        ),
        ([{"key": "a", "effect": "NoEvict"}], 'spec.taints[0].effect: Unsupported value: "NoEvict"'),
    ],
)
def test_node_taints_are_validated(
    core: client.CoreV1Api, taints: list[dict[str, str]], message: str
) -> None:
    node = core.list_node().items[0].metadata.name
    with pytest.raises(ApiException) as invalid:
        core.patch_node(node, {"spec": {"taints": taints}})
    assert invalid.value.status == 422
    assert yaml.safe_load(invalid.value.body)["reason"] == "Invalid"
    assert message in yaml.safe_load(invalid.value.body)["message"]
    # The same key with another effect is a different taint.
    core.patch_node(
        node,
        {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoExecute"}]}},
    )


def test_a_budget_cannot_set_both_min_available_and_max_unavailable(policy: client.PolicyV1Api) -> None:
    both = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="both"),
        spec=client.V1PodDisruptionBudgetSpec(
            min_available=1, max_unavailable=1, selector=client.V1LabelSelector(match_labels={"app": "web"})
        ),
    )
    for write in (
        lambda: policy.create_namespaced_pod_disruption_budget("default", both),
        lambda: policy.patch_namespaced_pod_disruption_budget(
            "web", "default", {"spec": {"maxUnavailable": 1}}
        ),
    ):
        with pytest.raises(ApiException) as invalid:
            write()
        assert invalid.value.status == 422
        assert "minAvailable and maxUnavailable cannot be both set" in invalid.value.body


def test_a_watch_reports_an_object_leaving_its_selection_as_it_last_matched(core: client.CoreV1Api) -> None:
    node = core.list_node().items[0].metadata.name
    version = core.list_node().metadata.resource_version
    cordoned = core.patch_node(node, {"spec": {"unschedulable": True}})
    events = watch.Watch().stream(
        core.list_node, field_selector="spec.unschedulable=false", resource_version=version, timeout_seconds=2
    )
    ((kind, obj),) = [(e["type"], e["object"]) for e in events]
    assert kind == "DELETED"
    assert not obj.spec.unschedulable  # the object before the change, which the watch last matched
    assert obj.metadata.resource_version == cordoned.metadata.resource_version  # at the change's version


def test_removing_the_last_finalizer_is_one_deleted_event(core: client.CoreV1Api) -> None:
    meta = client.V1ObjectMeta(name="held", finalizers=["example.com/hold"])
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=meta))
    core.delete_namespaced_config_map("held", "default")
    version = core.read_namespaced_config_map("held", "default").metadata.resource_version
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    events = watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=version, timeout_seconds=2
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("DELETED", "held")]


def test_a_bookmark_never_overtakes_a_queued_event(
    cluster: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apiserver, "BOOKMARK_SECONDS", 0.0)
    configmaps = BY_KEY["/configmaps"]
    sandbox, store = cluster.sandbox, cluster.sandbox.store

    class CommitAfterTimeout(queue.SimpleQueue):  # type: ignore[type-arg]
        """The race: a change is committed right after the watch's wait for events timed out."""

        raced = False

        def get(self, block: bool = True, timeout: float | None = None) -> Any:
            if not self.raced:
                self.raced = True
                with sandbox.lock:
                    store.create(configmaps, {"metadata": {"name": "late", "namespace": "default"}})
                raise queue.Empty
            return super().get(block, timeout)

    with sandbox.lock:
        watcher = store.watch(configmaps, "default", lambda _obj: True, store.resource_version)
    watcher.events = CommitAfterTimeout()
    api = apiserver.KubeApi(sandbox, store, sandbox.cluster)
    stream = api._stream(configmaps, watcher, timeout=5, bookmarks=True, connection=None)
    lines = [line for line in itertools.islice(stream, 3) if line]
    stream.close()
    first = json.loads(lines[0])
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "late")


def test_a_generated_name_already_taken_is_drawn_again(
    sandbox: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RetryGenerateName (on by default since 1.31): a generated name that is taken is drawn again, up
    to 8 attempts; only then is the create refused with 409 AlreadyExists."""
    draws = iter(["aaaaa", "aaaaa", "bbbbb", *["aaaaa"] * 8])
    monkeypatch.setattr(store, "_suffix", lambda: next(draws))
    core = client.CoreV1Api(sandbox.kube())
    generated = client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="drawn-"))

    names = [core.create_namespaced_config_map("default", generated).metadata.name for _ in range(2)]
    assert names == ["drawn-aaaaa", "drawn-bbbbb"]
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map("default", generated)
    assert refused.value.status == 409
    assert json.loads(refused.value.body)["reason"] == "AlreadyExists"
