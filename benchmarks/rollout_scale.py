"""Rollouts of the rehearsal at several sizes, nodeswap and the sandbox measured apart, in one run.

Run: python benchmarks/rollout_scale.py [--sizes 12,60,300] [--batch-pods-at-300 6000]

For each size N: the scenario of rehearsal.py (N workers, 10 pods a worker; at 300 nodes and above
also a batch group of dense small pods, ~9,000 pods in all), a detached sandbox in its own process,
then `nodeswap replace --asg workers --ami NEW --yes --output json` as a child process. Prints one JSON
object with, per size:
- the rollout's wall time against its lower bound (rollout_large.lower_bound: boot, join, then the
  slowest PDB's waves; the same at every size, since every copy of a workload keeps its shape);
- nodeswap's own CPU seconds (user + system of the child, from wait4) and peak RSS, whole and per
  replaced node;
- its Kubernetes and AWS requests per replaced node (the sandbox's record, by nodeswap's User-Agent),
  evictions included;
- PDB violations and lost pods, from the sandbox's observer;
- the sandbox's CPU seconds per wall second during the rollout (its process, from /proc): its cost,
  not nodeswap's, and whether it kept up (near 1.0 of its one core, it did not).
A benchmark, not a test: machines are shared, so compare the figures of one run with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rehearsal import cpu_seconds, scenario, start
from rollout_large import lower_bound

from nodeswap import USER_AGENT
from nodeswap.sandbox import process
from nodeswap.sandbox.scenario import Scenario


def environment(directory: Path) -> dict[str, str]:
    """The variables the sandbox's env.sh exports (endpoints, dummy keys, KUBECONFIG)."""
    env = dict(os.environ)
    for line in (directory / process.ENV_FILE).read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
        elif line.startswith("unset "):
            for key in line.split()[1:]:
                env.pop(key, None)
    return env


def measure(nodes: int, batch_pods: int, workdir: Path) -> dict[str, Any]:
    spec = scenario(nodes, batch_pods=batch_pods)
    state, startup = start(spec, workdir, str(nodes))
    directory = workdir / f"sandbox-{nodes}"
    try:
        image = state["world"]["images"]["new"]
        nodeswap = str(Path(sys.executable).with_name("nodeswap"))  # the installed command, as users run it
        command = [nodeswap, "replace", "--asg", "workers", "--ami", image]
        command += ["--yes", "--output", "json"]
        sandbox_cpu, started = cpu_seconds(state["pid"]), time.monotonic()
        child = subprocess.Popen(
            command, env=environment(directory), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert child.stdout is not None
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
        sandbox_cpu = cpu_seconds(state["pid"]) - sandbox_cpu
        report = process.fetch(directory, "report")
    finally:
        process.stop_detached(directory)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"nodeswap replace failed at {nodes} nodes: {output.decode()[-2000:]}")
    replaced = nodes  # every worker runs the old image
    ours = [r for r in report["requests"] if USER_AGENT in r["user_agent"]]  # boto3 appends it
    bound = float(lower_bound(Scenario.model_validate(spec))["lower_bound_seconds"])
    cpu = usage.ru_utime + usage.ru_stime
    last = next(line for line in reversed(output.splitlines()) if line.startswith(b'{"summary"'))
    (summary,) = json.loads(last)["summary"]
    return {
        "nodes_replaced": replaced,
        "pods_besides_daemonsets": sum(w["spec"].get("replicas", 0) for w in spec["kubernetes"]["workloads"]),
        "sandbox_startup_seconds": round(startup, 1),
        "rollout_seconds": round(wall, 1),
        "lower_bound_seconds": round(bound, 1),
        "ratio": round(wall / bound, 2),
        "phase_seconds": summary["phase_seconds"],
        "nodeswap_cpu_seconds": round(cpu, 2),
        "nodeswap_cpu_seconds_per_node": round(cpu / replaced, 3),
        "nodeswap_peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "kube_requests_per_node": round(sum(r["api"] == "kube" for r in ours) / replaced, 2),
        "aws_requests_per_node": round(sum(r["api"] == "aws" for r in ours) / replaced, 2),
        "evictions_per_node": round(
            sum(r["api"] == "kube" and r["subresource"] == "eviction" for r in ours) / replaced, 2
        ),
        "requests_by_operation": dict(Counter(_operation(r) for r in ours).most_common()),
        "pdb_violations": len(report["pdb_violations"]),
        "lost_pods": len(report["lost_pods"]),
        "sandbox_cpu_per_wall_second": round(sandbox_cpu / wall, 2),
    }


def _operation(request: dict[str, Any]) -> str:
    return f"{request['api']} {request['operation']} {request['subresource'] or ''}".strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="12,60,300", help="worker counts, comma-separated")
    parser.add_argument("--batch-pods-at-300", type=int, default=6000, help="batch pods from 300 nodes up")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for nodes in (int(size) for size in args.sizes.split(",")):
            batch = args.batch_pods_at_300 if nodes >= 300 else 0
            results[str(nodes)] = measure(nodes, batch, Path(workdir))
            print(json.dumps({nodes: results[str(nodes)]}), file=sys.stderr)  # progress, size by size
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
