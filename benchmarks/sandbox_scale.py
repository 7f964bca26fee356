"""How responsive the sandbox stays at scale: 50 nodes and 1,000 pods.

Run: python benchmarks/sandbox_scale.py [--nodes 50] [--pods 1000]

Starts a sandbox whose group has ``--nodes`` instances and a Deployment of ``--pods`` replicas, then
measures, over real HTTP with the official clients: start-up until every pod is Ready, and the
latency of typical requests (list all pods, list one node's pods by field selector, get a node,
patch a node, evict a pod, a watch event's delivery). Prints one JSON object. A benchmark, not a
test: machines are shared, so compare figures from one run, not against fixed thresholds.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

from nodeswap.sandbox.scenario import Scenario
from nodeswap.sandbox.server import Sandbox


def timed(action: Callable[[], Any], repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--pods", type=int, default=1000)
    args = parser.parse_args()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "load"},
        "spec": {
            "replicas": args.pods,
            "selector": {"matchLabels": {"app": "load"}},
            "template": {
                "metadata": {"labels": {"app": "load"}},
                "spec": {
                    "containers": [{"name": "c", "image": "a", "resources": {"requests": {"cpu": "10m"}}}]
                },
            },
        },
    }
    scenario = Scenario.model_validate(
        {
            "groups": [
                {
                    "min_size": args.nodes,
                    "max_size": args.nodes * 2,
                    "desired_capacity": args.nodes,
                    "instance_type": "m5.2xlarge",
                }
            ],
            "kubernetes": {"workloads": [deployment]},
        }
    )
    started = time.perf_counter()
    sandbox = Sandbox(scenario)
    sandbox.start()
    startup = time.perf_counter() - started
    api = client.ApiClient(client.Configuration(host=sandbox.kube_endpoint))
    core = client.CoreV1Api(api)
    try:
        pods = core.list_pod_for_all_namespaces().items
        nodes = core.list_node().items
        ready = sum(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in pods
        )
        node = nodes[0].metadata.name
        victims = iter(p.metadata.name for p in pods)
        eviction = lambda: core.create_namespaced_pod_eviction(  # noqa: E731
            name := next(victims), "default", client.V1Eviction(metadata=client.V1ObjectMeta(name=name))
        )
        results: dict[str, Any] = {
            "nodes": len(nodes),
            "pods": len(pods),
            "pods_ready_at_start": ready,
            "startup_seconds_to_all_ready": round(startup, 2),
            "list_all_pods": timed(core.list_pod_for_all_namespaces, 5),
            "list_all_pods_raw_http": timed(
                lambda: urllib.request.urlopen(f"{sandbox.kube_endpoint}/api/v1/pods").read(), 5
            ),
            "list_pods_on_one_node": timed(
                lambda: core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}"), 20
            ),
            "get_node": timed(lambda: core.read_node(node), 50),
            "patch_node": timed(lambda: core.patch_node(node, {"metadata": {"labels": {"bench": "1"}}}), 20),
            "evict_pod": timed(eviction, 20),
        }
        results["watch_event_delivery"] = watch_latency(core, node)
    finally:
        sandbox.stop()
    print(json.dumps(results, indent=2))


def watch_latency(core: client.CoreV1Api, node: str) -> dict[str, float]:
    """From a node patch to its MODIFIED event arriving on an open watch, one patch at a time."""
    version = core.list_node().metadata.resource_version
    arrivals: queue.SimpleQueue[float] = queue.SimpleQueue()

    def follow() -> None:
        for event in watch.Watch().stream(core.list_node, resource_version=version, timeout_seconds=30):
            if event["object"].metadata.labels.get("tick"):
                arrivals.put(time.perf_counter())

    threading.Thread(target=follow, daemon=True).start()
    delays = []
    for index in range(10):
        sent = time.perf_counter()
        core.patch_node(node, {"metadata": {"labels": {"tick": str(index + 1)}}})
        delays.append((arrivals.get(timeout=30) - sent) * 1000)
    return {"median_ms": round(statistics.median(delays), 2), "max_ms": round(max(delays), 2)}


if __name__ == "__main__":
    main()
