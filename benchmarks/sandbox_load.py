"""What the sandbox itself costs while a rollout runs against it, at several sizes.

Run: python benchmarks/sandbox_load.py [--sizes 12 60 300+6000 300x30] [--idle-seconds 10]

Each size is ``N[xP][+B]``: the scenario of rehearsal.py with N workers, P pods a worker (10 by
default) and B batch pods on a group of their own (none by default). For each, a detached sandbox in
its own process (as `nodeswap sandbox up --detach` starts it), then `nodeswap replace --asg workers
--ami NEW --yes` as a child process.
The sandbox's clock runs in real time, so a simulated second is a wall second; its CPU is read from
/proc (user + system of its process), nodeswap's from wait4. Prints one JSON object with, per size:
- the nodes (the group being replaced, the whole cluster) and the pods of workloads (DaemonSets' aside);
- start-up: wall seconds until the sandbox serves (the cluster seeded, every pod Ready) and its CPU;
- at rest: CPU seconds per wall second over ``--idle-seconds`` with nothing happening (near 0: the
  simulation is driven by changes and timers, nothing polls);
- rollout: wall seconds, the sandbox's CPU seconds and CPU seconds per wall second (1.0 is one core
  busy the whole time: the simulated cluster would fall behind real time), nodeswap's CPU seconds;
- PDB violations and lost pods, from the sandbox's observer.
A benchmark, not a test: machines are shared, so compare the figures of one run with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from rehearsal import cpu_seconds, scenario, start

from nodeswap.sandbox import process


def parse_size(text: str) -> tuple[int, int, int]:
    """``N[xP][+B]`` as (workers, pods a worker, batch pods)."""
    sized, _, batch = text.partition("+")
    nodes, _, pods = sized.partition("x")
    return int(nodes), int(pods or 10), int(batch or 0)


def measure(size: str, idle_seconds: float, directory: Path) -> dict[str, Any]:
    world = scenario(*parse_size(size))
    state, startup = start(world, directory, size)
    sandbox_dir = directory / f"sandbox-{size}"
    pid = int(state["pid"])
    try:
        startup_cpu = cpu_seconds(pid)
        # At rest: no request, no change; only timers far ahead (lifecycle-hook timeouts) are pending.
        idle_from = cpu_seconds(pid)
        threading.Event().wait(idle_seconds)
        idle_cpu = cpu_seconds(pid) - idle_from
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": state["aws_endpoint"],
            "AWS_DEFAULT_REGION": state["region"],
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox",
            "KUBECONFIG": str((sandbox_dir / process.KUBECONFIG_FILE).resolve()),
        }
        image = state["world"]["images"]["new"]
        command = [sys.executable, "-m", "nodeswap", "replace", "--asg", "workers", "--ami", image, "--yes"]
        before = cpu_seconds(pid)
        started = time.monotonic()
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        rollout = time.monotonic() - started
        sandbox_cpu = cpu_seconds(pid) - before
        errors = child.stderr.read().decode(errors="replace") if child.stderr else ""
        with urllib.request.urlopen(f"{state['aws_endpoint']}/_sandbox/report", timeout=120) as response:
            report = json.load(response)
    finally:
        process.stop_detached(sandbox_dir)
    pods = sum(
        w["spec"].get("replicas", 0) for w in world["kubernetes"]["workloads"] if w["kind"] != "DaemonSet"
    )
    return {
        "nodes_in_group": world["groups"][0]["desired_capacity"],
        "nodes_in_cluster": sum(g["desired_capacity"] for g in world["groups"]),
        "pods": pods,
        "startup_seconds": round(startup, 2),
        "startup_sandbox_cpu_seconds": round(startup_cpu, 2),
        "idle_sandbox_cpu_per_second": round(idle_cpu / idle_seconds, 4),
        "rollout_seconds": round(rollout, 2),
        "rollout_exit_code": os.waitstatus_to_exitcode(status),
        "rollout_error": errors.strip().splitlines()[-1] if status and errors.strip() else None,
        "sandbox_cpu_seconds": round(sandbox_cpu, 2),
        "sandbox_cpu_per_second": round(sandbox_cpu / rollout, 3),
        "nodeswap_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "pdb_violations": len(report["pdb_violations"]),
        "lost_pods": len(report["lost_pods"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--sizes", nargs="+", default=["12", "60", "300+6000", "300x30"], help="N[xP][+B], see above"
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        results = {size: measure(size, args.idle_seconds, Path(directory)) for size in args.sizes}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
