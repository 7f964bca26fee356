"""Rehearsal scenarios of any size, with the workload shapes of configs/rehearsal-large.yaml.

Run: python benchmarks/rehearsal.py --nodes 300 --batch-pods 6000 > /tmp/rehearsal-300.yaml

The group being replaced ("workers", m5.2xlarge) has ``--nodes`` instances; a "system" group of a tenth
of that shares their workloads, and with ``--batch-pods`` a "batch" group of m5.xlarge nodes runs that
many small pods at 50 a node (no PDB), as dense batch pools do. The groups besides "workers" are left
alone by a rollout. The Deployments, StatefulSet and PDBs of the 12-node rehearsal are copied (names
suffixed -1, -2, ...) until the workers and system nodes hold about ``--pods-per-node`` pods each;
the DaemonSet runs on every node. Every copy keeps the original's replicas, budget, probes and grace
periods, so the lower bound of a rollout (its slowest PDB's waves, see rollout_large.py) is the same at
every size: only the amount of work grows.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from nodeswap.sandbox import process

BASE = Path(__file__).resolve().parents[1] / "configs" / "rehearsal-large.yaml"


WORKERS, BATCH = "m5.2xlarge", "m5.xlarge"
BATCH_PODS_PER_NODE = 50
INSTANCE_TYPE = "node.kubernetes.io/instance-type"


def scenario(nodes: int, pods_per_node: int = 10, batch_pods: int = 0) -> dict[str, Any]:
    base: dict[str, Any] = yaml.safe_load(BASE.read_text())
    workloads = base["kubernetes"]["workloads"]
    shared = [w for w in workloads if w["kind"] == "DaemonSet"]
    copied = [_on(w, WORKERS) for w in workloads if w["kind"] != "DaemonSet"]
    system = max(1, nodes // 10)
    pods_per_copy = sum(w["spec"].get("replicas", 0) for w in copied)
    copies = max(1, math.ceil((nodes + system) * pods_per_node / pods_per_copy))
    base["groups"] = [
        base["groups"][0] | _sized(nodes) | {"instance_type": WORKERS},
        {"name": "system", "instance_type": WORKERS} | _sized(system),
    ]
    base["kubernetes"]["workloads"] = shared + [
        _renamed(w, f"-{index}") for index in range(1, copies + 1) for w in copied
    ]
    if batch_pods:
        size = math.ceil(batch_pods / BATCH_PODS_PER_NODE)
        base["groups"].append({"name": "batch", "instance_type": BATCH} | _sized(size))
        base["kubernetes"]["workloads"].append(_batch(batch_pods))
    return base


def _sized(nodes: int) -> dict[str, int]:
    return {"min_size": nodes, "max_size": nodes * 2, "desired_capacity": nodes}


def _on(workload: dict[str, Any], instance_type: str) -> dict[str, Any]:
    """A copy of a workload whose pods run only on nodes of ``instance_type`` (a PDB: as it is)."""
    clone = copy.deepcopy(workload)
    if "template" in clone["spec"]:
        clone["spec"]["template"]["spec"]["nodeSelector"] = {INSTANCE_TYPE: instance_type}
    return clone


def _batch(replicas: int) -> dict[str, Any]:
    labels = {"app": "batch"}
    requests = {"cpu": "10m", "memory": "16Mi"}
    container = {"name": "task", "image": "task:1", "resources": {"requests": requests}}
    return _on(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "batch"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        BATCH,
    )


def _renamed(workload: dict[str, Any], suffix: str) -> dict[str, Any]:
    """A copy of a workload or PDB whose name and app label carry ``suffix``."""
    clone = copy.deepcopy(workload)
    clone["metadata"]["name"] += suffix
    spec = clone["spec"]
    spec["selector"]["matchLabels"]["app"] += suffix
    if "template" in spec:
        spec["template"]["metadata"]["labels"]["app"] += suffix
    if "serviceName" in spec:
        spec["serviceName"] += suffix
    return clone


def start(spec: dict[str, Any], directory: Path, name: str) -> tuple[dict[str, Any], float]:
    """A detached sandbox (its own process) of ``spec`` under ``directory``: its state, and the seconds it
    took to serve with every pod Ready."""
    path = directory / f"rehearsal-{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    started = time.monotonic()
    state = process.start_detached(path, directory / f"sandbox-{name}")
    return state, time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=60)
    parser.add_argument("--pods-per-node", type=int, default=10)
    parser.add_argument("--batch-pods", type=int, default=0)
    args = parser.parse_args()
    yaml.safe_dump(scenario(args.nodes, args.pods_per_node, args.batch_pods), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
