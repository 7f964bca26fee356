"""How long the planner takes on a large cluster: 2,000 nodes and 60,000 pods, all to be replaced.

Run: python benchmarks/plan_scale.py [--nodes 2000] [--pods 60000] [--repeat 3] [--seed 7] [--profile]

Builds a synthetic snapshot with a fixed seed: one Auto Scaling group ``workers`` whose instances all
run an older launch template version, one DaemonSet pod per node, ~1,500 Deployments and some
StatefulSets over ~100 namespaces, ~1,000 PodDisruptionBudgets and ~1,500 Services. Then measures the
CPU time (time.process_time) of ``plan_group`` alone, building the snapshot excluded: ``--repeat``
times in one wave, and once with ``--surge`` instances per wave. Prints one JSON object; with
``--profile``, also the top functions of one plan by cumulative and own time, on stderr. A benchmark,
not a test: machines are shared, so compare figures from one run, not against fixed thresholds.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

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
)
from nodeswap.plan import GroupPlan, Settings, plan_group

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
INSTANCE_TYPE = "m5.4xlarge"
ALLOCATABLE = Resources(15.89, 60e9, 234)
MI = 2**20
TEMPLATE = {"template_id": "lt-0a1b2c3d4e5f60718", "template_name": "workers"}
HASH = "abc123"


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _replicas(rng: random.Random, count: int, total: int) -> list[int]:
    """``count`` replica counts summing to ``total``: mostly small, a long tail of large ones."""
    assert total >= count
    weights = [rng.lognormvariate(0, 1.2) for _ in range(count)]
    scale = total / sum(weights)
    replicas = [max(1, round(w * scale)) for w in weights]
    # Settle the rounding on the largest workloads so the total is exact.
    order = sorted(range(count), key=lambda i: -replicas[i])
    step = 0
    while (gap := total - sum(replicas)) != 0:
        i = order[step % count]
        if gap > 0 or replicas[i] > 1:
            replicas[i] += 1 if gap > 0 else -1
        step += 1
    return replicas


class Cluster:
    """The synthetic cluster, built with one seeded random generator."""

    def __init__(self, nodes: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.instances: list[Instance] = []
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []
        self.budgets: list[Budget] = []
        self.services: list[Service] = []
        self.controllers: dict[str, Owner] = {}
        for index in range(nodes):
            self._add_node(index)
        self.free = {n.name: ALLOCATABLE for n in self.nodes}
        self.names = [n.name for n in self.nodes]
        self.started = {n.name: n.ready_since or NOW for n in self.nodes}

    def _add_node(self, index: int) -> None:
        rng, zone = self.rng, ZONES[index % len(ZONES)]
        instance_id = f"i-{_hex(rng, 17)}"
        launched = NOW - timedelta(days=30, seconds=rng.uniform(0, 20 * 86400))
        created = launched + timedelta(seconds=rng.uniform(60, 120))
        name = f"ip-10-{index // 250}-{index % 250}-{rng.randint(1, 254)}.ec2.internal"
        self.instances.append(
            Instance(
                instance_id,
                zone,
                "InService",
                True,
                LaunchSpec(**TEMPLATE, version="1"),
                launched_at=launched,
                image_id="ami-0123456789abcdef0",
                instance_type=INSTANCE_TYPE,
            )
        )
        self.nodes.append(
            Node(
                name,
                f"aws:///{zone}/{instance_id}",
                ready=True,
                labels={
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": name,
                    "node.kubernetes.io/instance-type": INSTANCE_TYPE,
                    "topology.kubernetes.io/region": "us-east-1",
                    "topology.kubernetes.io/zone": zone,
                    "eks.amazonaws.com/nodegroup": "workers",
                },
                annotations={"node.alpha.kubernetes.io/ttl": "0"},
                allocatable=ALLOCATABLE,
                created_at=created,
                ready_since=created + timedelta(seconds=rng.uniform(20, 40)),
            )
        )

    def group(self) -> Group:
        count = len(self.instances)
        return Group(
            "workers",
            min_size=count,
            max_size=count + count // 5,
            desired=count,
            launch=LaunchSpec(**TEMPLATE, version="2"),
            instances=tuple(self.instances),
            zones=ZONES,
            instance_types=(INSTANCE_TYPE,),
        )

    def snapshot(self) -> Snapshot:
        pods = list(self.pods)
        self.rng.shuffle(pods)
        return Snapshot(
            tuple(self.nodes), tuple(pods), tuple(self.budgets), tuple(self.services), self.controllers
        )

    def place(self, requests: Resources) -> str:
        """A random node with room for the requests (the least loaded of a few if none has)."""
        tried = [self.rng.choice(self.names) for _ in range(8)]
        free = self.free
        node = next((n for n in tried if requests.within(free[n])), max(tried, key=lambda n: free[n].cpu))
        free[node] = free[node] - requests
        return node

    def add_pod(
        self,
        namespace: str,
        name: str,
        owner: Owner,
        labels: dict[str, str],
        shape: dict[str, Any],
        *,
        node: str | None = None,
    ) -> None:
        rng = self.rng
        if node is None:
            node = self.place(shape["requests"])
        else:
            self.free[node] = self.free[node] - shape["requests"]
        created = self.started[node] + timedelta(seconds=rng.uniform(30, 7 * 86400))
        uid = f"{len(self.pods):08x}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}"
        self.pods.append(
            Pod(
                namespace,
                name,
                uid,
                node,
                labels=labels,
                owner=owner,
                created_at=created,
                ready_since=created + timedelta(seconds=rng.uniform(5, 60)),
                **shape,
            )
        )

    def shape(self, requests: Resources | None = None) -> dict[str, Any]:
        """A pod template's requests and lifecycle: most have a readiness probe and a preStop sleep."""
        rng = self.rng
        if requests is None:
            cpu = rng.choice((0.1, 0.1, 0.25, 0.25, 0.5, 1.0))
            requests = Resources(cpu, rng.choice((128, 256, 256, 512, 1024, 2048)) * MI, 1)
        probe, stop = rng.random() < 0.9, rng.random() < 0.8
        return {
            "requests": requests,
            "readiness_probe": probe,
            "readiness_delay": float(rng.choice((0, 0, 5, 10))) if probe else 0.0,
            "pre_stop": stop,
            "pre_stop_seconds": 5.0 if stop else 0.0,
            "grace_seconds": 30,
        }

    def daemonset(self) -> None:
        """One node agent per node, placed first."""
        owner, shape = Owner("DaemonSet", "node-agent"), self.shape(Resources(0.1, 200 * MI, 1))
        labels = {"app": "node-agent", "controller-revision-hash": "6d5f8c7b9"}
        for node in self.nodes:
            name = f"node-agent-{_hex(self.rng, 5)}"
            self.add_pod("kube-system", name, owner, labels, shape, node=node.name)

    def deployment(self, namespace: str, app: str, replicas: int) -> None:
        replica_set = f"{app}-{HASH}"
        self.controllers[f"{namespace}/ReplicaSet/{replica_set}"] = Owner("Deployment", app)
        owner, shape = Owner("ReplicaSet", replica_set), self.shape()
        labels = {"app": app, "pod-template-hash": HASH}
        for _ in range(replicas):
            self.add_pod(namespace, f"{replica_set}-{_hex(self.rng, 5)}", owner, labels, shape)

    def statefulset(self, namespace: str, app: str, replicas: int) -> None:
        owner, shape = Owner("StatefulSet", app), self.shape(Resources(1.0, 2048 * MI, 1))
        for ordinal in range(replicas):
            name = f"{app}-{ordinal}"
            labels = {
                "app": app,
                "controller-revision-hash": f"{app}-7d9f8b6c5",
                "statefulset.kubernetes.io/pod-name": name,
            }
            self.add_pod(namespace, name, owner, labels, shape)

    def protect(self, namespace: str, app: str, replicas: int) -> None:
        """A PDB: maxUnavailable 1 or 25%, or (rarely) a minAvailable of every replica."""
        roll = self.rng.random()
        spec: dict[str, Any]
        if roll < 0.01:
            spec, desired = {"min_available": replicas}, replicas
        elif roll < 0.3:
            spec, desired = {"max_unavailable": "25%"}, replicas - max(-(-replicas // 4), 1)
        else:
            spec, desired = {"max_unavailable": 1}, replicas - 1
        desired = max(desired, 0)
        self.budgets.append(
            Budget(
                namespace,
                f"{app}-pdb",
                {"matchLabels": {"app": app}},
                **spec,
                expected_pods=replicas,
                current_healthy=replicas,
                desired_healthy=desired,
                disruptions_allowed=replicas - desired,
            )
        )


def build(nodes: int, pods: int, seed: int) -> tuple[Group, Snapshot]:
    """1,500 Deployments (990 with a PDB, 1,400 behind a Service) and 100 StatefulSets (each with a PDB
    and a Service) over 100 namespaces, after one DaemonSet pod per node; ``pods`` in all."""
    cluster = Cluster(nodes, seed)
    cluster.daemonset()
    namespaces = [f"team-{i:03d}" for i in range(100)]
    workload_pods = pods - len(cluster.pods)
    stateful_pods = min(400, workload_pods // 10)
    for index, replicas in enumerate(_replicas(cluster.rng, 1500, workload_pods - stateful_pods)):
        namespace, app = namespaces[index % len(namespaces)], f"svc-{index:04d}"
        cluster.deployment(namespace, app, replicas)
        if index < 990:
            cluster.protect(namespace, app, replicas)
        if index < 1400:
            cluster.services.append(Service(namespace, app, {"app": app}))
    for index, replicas in enumerate(_replicas(cluster.rng, 100, stateful_pods)):
        namespace, app = namespaces[(index * 7) % len(namespaces)], f"db-{index:03d}"
        cluster.statefulset(namespace, app, replicas)
        cluster.protect(namespace, app, replicas)
        cluster.services.append(Service(namespace, app, {"app": app}))
    # Strays: Services without a selector, budgets left behind by deleted apps.
    cluster.services += [Service(namespaces[i], f"external-{i}", {}) for i in range(10)]
    cluster.budgets += [
        Budget(namespaces[i], f"gone-{i}-pdb", {"matchLabels": {"app": f"gone-{i}"}}) for i in range(5)
    ]
    return cluster.group(), cluster.snapshot()


def timed_plan(group: Group, snapshot: Snapshot, surge: int | None) -> tuple[float, GroupPlan]:
    started = time.process_time()
    plan = plan_group(group, snapshot, settings=Settings(), now=NOW, surge=surge)
    return time.process_time() - started, plan


def summary(plan: GroupPlan) -> dict[str, Any]:
    checks: dict[str, int] = {}
    for finding in (*plan.blockers, *plan.warnings):
        checks[finding.check] = checks.get(finding.check, 0) + 1
    return {
        "outdated_instances": len(plan.outdated),
        "waves": len(plan.waves),
        "decisions": len(plan.decisions),
        "evictions": len(plan.evictions),
        "blockers": len(plan.blockers),
        "warnings": len(plan.warnings),
        "findings_by_check": dict(sorted(checks.items())),
        "fits": plan.fit.fits if plan.fit else None,
        "estimate_seconds": round(plan.estimate.seconds, 1) if plan.estimate else None,
    }


def profile(group: Group, snapshot: Snapshot, surge: int | None) -> str:
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(plan_group, group, snapshot, settings=Settings(), now=NOW, surge=surge)
    out = io.StringIO()
    for order in ("cumulative", "tottime"):
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(25)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=60000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--surge", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one plan on stderr")
    args = parser.parse_args()
    started = time.process_time()
    group, snapshot = build(args.nodes, args.pods, args.seed)
    build_seconds = time.process_time() - started
    runs, plan = [], None
    for _ in range(args.repeat):
        seconds, plan = timed_plan(group, snapshot, None)
        runs.append(seconds)
    assert plan is not None
    surge_seconds, surge_plan = timed_plan(group, snapshot, args.surge)
    result: dict[str, Any] = {
        "nodes": len(snapshot.nodes),
        "pods": len(snapshot.pods),
        "budgets": len(snapshot.budgets),
        "services": len(snapshot.services),
        "build_cpu_seconds": round(build_seconds, 2),
        "plan_cpu_seconds_min": round(min(runs), 3),
        "plan_cpu_seconds_runs": [round(r, 3) for r in runs],
        "plan": summary(plan),
        f"surge_{args.surge}_cpu_seconds": round(surge_seconds, 3),
        f"surge_{args.surge}_plan": summary(surge_plan),
    }
    print(json.dumps(result, indent=2))
    if args.profile:
        print(profile(group, snapshot, None), file=sys.stderr)
        print(profile(group, snapshot, args.surge), file=sys.stderr)


if __name__ == "__main__":
    main()
